"""The HTTP app (the route table, limits, metrics) and the command line of `python -m kerasdl.serve`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from kerasdl.errors import UsageError, entry_point, positive
from kerasdl.serve import metrics as metrics_module
from kerasdl.serve.batching import Batcher
from kerasdl.serve.limits import Admission, deadline_protocol, read_body
from kerasdl.serve.page import (EXPORT_COMMANDS, MAX_PIXELS, MAX_SIDE, classify, image_width, latent_plane,
                                read_number, reduce_upload)
from kerasdl.serve.protocol import ApiError, Limits, one_line, parse_path, parse_predict, render, run_signature, to_json
from kerasdl.serve.store import ModelStore, read_model_config

log = logging.getLogger("kerasdl.serve")

WEB = Path(__file__).resolve().parents[1] / "web"
INLINE_BYTES = 64 * 1024  # smaller bodies are parsed on the event loop (well under a millisecond)
INLINE_VALUES = 10_000  # smaller answers are rendered there too; larger work goes to a worker thread


@dataclass(frozen=True)
class Options:
    """Everything the flags set about answering requests (defaults: the flags' defaults)."""

    max_body: int = 4 * 1024 * 1024  # bytes; larger requests get 413 before they are parsed
    max_rows: int = Limits.max_rows
    max_output_values: int = Limits.max_output_values
    max_concurrent: int = 32  # requests at work (parsing, in the batcher, rendering)
    max_queue: int = 32  # requests waiting for one of those slots; beyond: 503
    body_timeout: float = 30.0  # seconds to receive a whole body
    parse_threads: int = 4  # JSON parsing and rendering, off the event loop
    decode_threads: int = 2  # images being decoded at once
    max_pixels: int = MAX_PIXELS
    max_side: int = MAX_SIDE
    batching: bool = True
    poll_seconds: float = 1.0  # 0: load once at start


def create_app(store: ModelStore, options: Options = Options()):
    """The ASGI app serving the models in `store`.

    Starlette (the ASGI toolkit FastAPI is built on) rather than FastAPI itself: TF Serving's
    URLs (`/v1/models/cnn:predict`) and its `{"error": ...}` bodies are routed and written
    here by hand, so FastAPI's validation and OpenAPI layers would only stand in the way.
    """
    import anyio
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import FileResponse, Response
    from starlette.routing import Route

    limits = Limits(options.max_rows, options.max_output_values)
    metrics = metrics_module.Metrics()
    admission = Admission(options.max_concurrent, options.max_queue)
    parse_limiter = anyio.CapacityLimiter(options.parse_threads)
    decode_limiter = anyio.CapacityLimiter(options.decode_threads)
    store.on_change = lambda: metrics.models_changed(store)
    metrics.models_changed(store)

    async def model_call(fn, tensors):
        try:
            return await run_in_threadpool(run_signature, fn, tensors)
        except Exception as exc:  # e.g. an op failing on these inputs: this call's requests get 500
            raise ApiError(500, f"the model call failed ({one_line(exc, 200)})") from None

    def batched(tag, rows):
        metrics.batch_size.labels(*tag).observe(rows)

    batcher = Batcher(model_call, on_batch=batched) if options.batching else None

    def json_response(payload: bytes, status: int = 200) -> Response:
        return Response(payload, status_code=status, media_type="application/json")

    def error(exc: ApiError) -> Response:
        response = json_response(to_json({"error": exc.message}), exc.status)
        if exc.status == 503:
            response.headers["Retry-After"] = "1"  # seconds; a polite client backs off instead of hammering
        return response

    def measured(endpoint: str):
        """Count every answer of a route by model, version, endpoint and status, and time it."""
        def wrap(handler):
            async def run(request):
                request.state.model = request.state.version = ""
                start = time.perf_counter()
                status = 500
                try:
                    response = await handler(request)
                    status = response.status_code
                    return response
                except ApiError as exc:
                    status = exc.status
                    raise
                finally:
                    metrics.requests.labels(request.state.model, request.state.version, endpoint, str(status)).inc()
                    metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
            return run
        return wrap

    async def offload(limiter, fn, *args):
        """Run `fn` in a worker thread, at most `limiter`'s number at once, off the event loop."""
        return await anyio.to_thread.run_sync(lambda: fn(*args), limiter=limiter)

    # ---- TF Serving's REST API --------------------------------------------------------------

    @measured("status")
    async def model_get(request):
        path = parse_path(request.method, request.url.path)
        if path.name in store.models:  # never a label value per made-up name: the metrics stay bounded
            request.state.model = path.name
        answer = store.metadata(path) if path.action == "metadata" else store.status(path)
        return json_response(to_json(answer))

    @measured("predict")
    async def model_post(request):
        path = parse_path("POST", request.url.path)
        servable = store.find(path)  # the version is fixed here: a switch meanwhile does not change it
        request.state.model, request.state.version = servable.name, str(servable.version)
        body = await read_body(request, options.max_body, options.body_timeout)
        async with admission.slot():
            if len(body) <= INLINE_BYTES:  # a thread hop would cost more than the parse
                fn, tensors, rows = parse_predict(servable, body, limits)
            else:
                fn, tensors, rows = await offload(parse_limiter, parse_predict, servable, body, limits)
            if batcher is not None:
                outputs = await batcher.run(fn, tensors, (servable.name, str(servable.version)))
            else:
                outputs = await model_call(fn, tensors)
                metrics.batch_size.labels(servable.name, str(servable.version)).observe(len(next(iter(tensors.values()))))
            if sum(v.size for v in outputs.values()) <= INLINE_VALUES:
                payload = render(outputs, rows, limits)
            else:
                payload = await offload(parse_limiter, render, outputs, rows, limits)
        return json_response(payload)

    async def bad_method(request):
        raise ApiError(400, f"Malformed request: {request.method} {request.url.path}")

    # ---- the page's backend -----------------------------------------------------------------

    def read_upload(image: bytes, servables: dict) -> dict:
        return classify(servables, reduce_upload(image, options.max_pixels, options.max_side))

    def read_number_upload(image: bytes, servables: dict) -> dict:
        reduced = reduce_upload(image, options.max_pixels, options.max_side)
        return read_number(servables, reduced, scale=image_width(image) / image_width(reduced))

    def upload_endpoint(work):
        """An endpoint taking an image's bytes: bounded body, admission, a bounded pool of decoders."""
        async def endpoint(request):
            image = await read_body(request, options.max_body, options.body_timeout)
            if not image:
                raise ApiError(400, "empty body: send the image's bytes (PNG, JPEG, BMP, GIF or WebP)")
            async with admission.slot():
                answer = await offload(decode_limiter, work, image, store.servables())
            return json_response(to_json(answer))
        return endpoint

    digits_classify = measured("classify")(upload_endpoint(read_upload))
    digits_read = measured("read")(upload_endpoint(read_number_upload))

    latent_cache: dict = {}
    latent_lock = asyncio.Lock()

    @measured("latent")
    async def digits_latent(request):
        servables = store.servables()
        key = str(servables["encoder"].version) if "encoder" in servables else None
        async with latent_lock:  # computed once per encoder version, then served from memory
            if latent_cache.get("key", "unset") != key:
                latent_cache["plane"] = await run_in_threadpool(latent_plane, servables)
                latent_cache["key"] = key
        return json_response(to_json(latent_cache["plane"]))

    async def digits_models(request):
        servables = store.servables()
        return json_response(to_json({
            "models": {name: str(s.version) for name, s in servables.items()},
            "missing": {name: cmd for name, cmd in EXPORT_COMMANDS.items() if name not in servables},
        }))

    async def page(request):
        return FileResponse(WEB / "index.html", media_type="text/html")

    async def static(request):
        name = request.path_params["name"]
        if not re.match(r"^[a-z]+\.(js|css)$", name) or not (WEB / name).is_file():
            raise ApiError(404, f"no such file: {name}")
        return FileResponse(WEB / name)

    async def prometheus(request):
        metrics.queue_depth.labels("admission").set(admission.waiting)
        metrics.queue_depth.labels("batching").set(batcher.depth() if batcher else 0)
        metrics.in_flight.set(admission.working)
        payload, content_type = metrics.render()
        return Response(payload, media_type=content_type)

    # ---- the route table: every URL the server answers ----------------------------------------

    routes = [
        Route("/v1/models{path:path}", model_get, methods=["GET"]),  # and HEAD
        Route("/v1/models{path:path}", model_post, methods=["POST"]),
        Route("/v1/digits:classify", digits_classify, methods=["POST"]),
        Route("/v1/digits:read", digits_read, methods=["POST"]),
        Route("/v1/digits/latent", digits_latent, methods=["GET"]),
        Route("/v1/digits/models", digits_models, methods=["GET"]),
        Route(metrics_module.PATH, prometheus, methods=["GET"]),
        Route("/", page, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/v1/{path:path}", bad_method, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]

    async def api_error(request, exc: ApiError):
        if exc.status == 499:
            log.info("%s %s: %s", request.method, request.url.path, exc.message)
        return error(exc)

    async def http_error(request, exc: HTTPException):
        what = "no such endpoint" if exc.status_code == 404 else exc.detail
        return error(ApiError(exc.status_code, f"{what}: {request.method} {request.url.path}"))

    async def internal(request, exc):
        log.error("internal error on %s: %r", request.url.path, exc)
        return error(ApiError(500, f"internal error ({exc.__class__.__name__}); see the server log"))

    async def watch():
        while True:
            await asyncio.sleep(options.poll_seconds)
            try:
                if await run_in_threadpool(store.poll):
                    await run_in_threadpool(freeze)  # the new version's objects, like the first ones
            except Exception as exc:  # e.g. the models directory gone for a moment: try again next time
                log.warning("polling %s failed: %r", store.root, exc)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.get_running_loop().create_task(watch()) if options.poll_seconds > 0 else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            store.close()

    handlers = {ApiError: api_error, HTTPException: http_error, Exception: internal}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.metrics, app.state.admission, app.state.batcher = metrics, admission, batcher
    return app


def freeze() -> None:
    """Move every object alive now out of the garbage collector's sight.

    TensorFlow leaves about a million long-lived Python objects; every full collection walked
    them all, stalling every request in flight for ~200 ms once a second under load. Done after
    loading at start and after each poll that loaded a version (one collection then, not one a second).
    """
    gc.collect()
    gc.freeze()


def parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m kerasdl.serve",
                                description="Serve every exported model with TensorFlow Serving's REST API, "
                                "and a page to draw digits on. New versions are picked up while it runs.")
    p.add_argument("--models", type=Path, default=Path("saved_models"),
                   help="directory of exports <name>/<version>/ (default: saved_models); each model's newest "
                   "version is served, and new versions are loaded as they appear")
    p.add_argument("--model_config_file", "--model-config-file", dest="model_config_file", type=Path,
                   help="TF Serving's model config (protobuf text format): serve only the models it lists, from "
                   "their base_path, with their version policy and version_labels (stable, canary, ...); "
                   "then --models and --keep-versions are not used")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=port_number, default=8501,
                   help="port (default: 8501, TensorFlow Serving's REST port; 0: any free port, named in the "
                        "'serving on' line)")
    p.add_argument("--poll-seconds", type=float, default=d.poll_seconds,
                   help="how often to look for new or removed versions, like TF Serving's "
                   f"--file_system_poll_wait_seconds (default: {d.poll_seconds:g}; 0: load once at start)")
    p.add_argument("--keep-versions", type=positive(int), default=1,
                   help="versions of each model kept loaded, newest first (default: 1, TF Serving's 'latest' policy)")
    p.add_argument("--max-body", type=positive(int), default=d.max_body,
                   help=f"largest request body in bytes; larger ones get 413 (default: {d.max_body})")
    p.add_argument("--max-rows", type=positive(int), default=d.max_rows,
                   help=f"most instances in one :predict request; more get 400 (default: {d.max_rows})")
    p.add_argument("--max-output-values", type=positive(int), default=d.max_output_values,
                   help=f"most numbers in one answer; requests that would get more get 400 (default: {d.max_output_values})")
    p.add_argument("--max-concurrent", type=positive(int), default=d.max_concurrent,
                   help=f"requests worked on at once (default: {d.max_concurrent})")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help=f"requests waiting for a slot; beyond this they get 503 at once (default: {d.max_queue})")
    p.add_argument("--max-connections", type=positive(int), default=1000,
                   help="open connections at most; beyond this requests get uvicorn's 503 (default: 1000)")
    p.add_argument("--header-timeout", type=positive(float), default=10.0,
                   help="seconds a client that owes bytes (a request's head, or the rest of a body, also after an "
                        "early answer) may stay silent before its connection is closed (default: 10)")
    p.add_argument("--body-timeout", type=positive(float), default=d.body_timeout,
                   help=f"seconds a request's body may take to arrive; then 408 (default: {d.body_timeout:g})")
    p.add_argument("--keep-alive", type=positive(float), default=5.0,
                   help="seconds an idle keep-alive connection is kept open (default: 5)")
    p.add_argument("--no-batching", action="store_true",
                   help="run every :predict request as its own model call (default: concurrent requests "
                   "to one model are batched into one call)")
    p.add_argument("--quiet", action="store_true", help="no log line per request")
    return p


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 0..65535 (0 lets the kernel pick a free one)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not in 0..65535")
    return value


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything slow happens, or a one-line UsageError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio sets TCP_NODELAY only on sockets whose proto is TCP, and
    # without it Nagle's algorithm and delayed ACKs held every answer ~40 ms (half the throughput).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"--port {port}: cannot listen on {host} ({exc.strerror}); pick another port "
                         "or stop the server already using it") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


REPORT_EXPORTS = (Path("runs/saved_models"), Path("runs/quick/saved_models"))
"""Where `python -m kerasdl.report` (and `--quick`) exports its models: `<--runs>/saved_models`."""


def exported_names(directory: Path) -> list[str]:
    """Names under `directory` with at least one version holding a SavedModel (no TensorFlow needed)."""
    if not directory.is_dir():
        return []
    return sorted(model.name for model in directory.iterdir() if model.is_dir() and
                  any(v.name.isdigit() and (v / "saved_model.pb").is_file() for v in model.iterdir()))


def no_models_line(models: Path) -> str:
    """The warning when `models` holds no export: names the report's exports and the command that serves
    them when there are some, since a newcomer who ran the write-up has its models there, not in saved_models/."""
    for other in REPORT_EXPORTS:
        names = exported_names(other)
        if names and other.resolve() != models.resolve():
            return (f"no exported models in {models}; the report's models ({', '.join(names)}) are in {other}: "
                    f"serve them with  python -m kerasdl.serve --models {other}")
    return f"no exported models in {models}: the page will say how to export them"


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.max_queue < 0:
        raise UsageError(f"--max-queue {args.max_queue}: must be 0 or more")
    if args.poll_seconds < 0:
        raise UsageError(f"--poll-seconds {args.poll_seconds:g}: must be 0 (no polling) or more")
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    config = read_model_config(args.model_config_file) if args.model_config_file else None
    store = ModelStore(args.models, keep_versions=args.keep_versions, config=config)
    sock = listen(args.host, args.port)
    store.poll()
    import uvicorn

    freeze()

    servables = store.servables()
    names = ", ".join(f"{s.name} (version {s.version})" for s in servables.values()) or "none"
    log.info("models from %s: %s", args.models, names)
    if not servables:
        log.warning("%s", no_models_line(args.models))
    host = f"[{args.host}]" if ":" in args.host else args.host
    log.info("serving on http://%s:%d/  (REST: /v1/models/<name>:predict)", host, sock.getsockname()[1])
    options = Options(max_body=args.max_body, max_rows=args.max_rows, max_output_values=args.max_output_values,
                      max_concurrent=args.max_concurrent, max_queue=args.max_queue, body_timeout=args.body_timeout,
                      batching=not args.no_batching, poll_seconds=args.poll_seconds)
    config = uvicorn.Config(create_app(store, options), http=deadline_protocol(args.header_timeout),
                            access_log=not args.quiet, log_level="info", timeout_graceful_shutdown=2,
                            timeout_keep_alive=args.keep_alive, limit_concurrency=args.max_connections)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))
    return 0


cli = entry_point(main, "python -m kerasdl.serve")
