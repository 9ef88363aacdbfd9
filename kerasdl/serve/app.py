"""The HTTP app (routes, limits) and the command line of `python -m kerasdl.serve`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import re
import sys
from pathlib import Path

from kerasdl.errors import UsageError, positive, run_cli
from kerasdl.serve.batching import Batcher
from kerasdl.serve.page import EXPORT_COMMANDS, classify, latent_plane
from kerasdl.serve.protocol import ROUTE, ApiError, find, format_outputs, metadata, parse_json, parse_predict, run_signature, status
from kerasdl.serve.store import load_models

log = logging.getLogger("kerasdl.serve")

MAX_BODY = 4 * 1024 * 1024  # bytes; larger requests get 413 before they are parsed


async def read_body(request, limit: int) -> bytes:
    """The request body, or 413 as soon as it is known to be over `limit` bytes (before parsing)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(servables: dict, max_body: int = MAX_BODY, batching: bool = True):
    """The ASGI app serving `servables` (name -> Servable).

    Starlette (the ASGI toolkit FastAPI is built on) rather than FastAPI itself: TF Serving's
    URLs (`/v1/models/cnn:predict`) and its `{"error": ...}` bodies are routed and written
    here by hand, so FastAPI's validation and OpenAPI layers would only stand in the way.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Route

    web = Path(__file__).resolve().parents[1] / "web"
    batcher = Batcher() if batching else None

    def error(exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    async def api_error(request, exc: ApiError):
        return error(exc)

    async def http_error(request, exc: HTTPException):
        what = "no such endpoint" if exc.status_code == 404 else exc.detail
        return error(ApiError(exc.status_code, f"{what}: {request.method} {request.url.path}"))

    async def internal(request, exc):
        log.error("internal error on %s: %r", request.url.path, exc)
        return error(ApiError(500, f"internal error ({exc.__class__.__name__}); see the server log"))

    async def models(request):
        match = ROUTE.match(request.url.path)
        if request.method == "GET":
            if not match or match["tail"] == ":predict":
                raise ApiError(404, f"no such endpoint: GET {request.url.path}")
            servable = find(servables, match["name"], match["version"])
            return JSONResponse(metadata(servable) if match["tail"] == "/metadata" else status(servable))
        if not match or match["tail"] != ":predict":
            raise ApiError(404, f"no such endpoint: POST {request.url.path} (only :predict is served)")
        servable = find(servables, match["name"], match["version"])
        fn, tensors, rows = parse_predict(servable, parse_json(await read_body(request, max_body)))
        outputs = await batcher.run(fn, tensors) if batcher else await run_in_threadpool(run_signature, fn, tensors)
        return JSONResponse(format_outputs(outputs, rows))

    async def digits_classify(request):
        image = await read_body(request, max_body)
        if not image:
            raise ApiError(400, "empty body: send the image's bytes (PNG or JPEG)")
        return JSONResponse(await run_in_threadpool(classify, servables, image))

    latent_cache: dict = {}
    latent_lock = asyncio.Lock()

    async def digits_latent(request):
        async with latent_lock:  # computed once, on the first request, then served from memory
            if "plane" not in latent_cache:
                latent_cache["plane"] = await run_in_threadpool(latent_plane, servables)
        return JSONResponse(latent_cache["plane"])

    async def digits_models(request):
        return JSONResponse({
            "models": {name: str(s.version) for name, s in servables.items()},
            "missing": {name: cmd for name, cmd in EXPORT_COMMANDS.items() if name not in servables},
        })

    async def page(request):
        return FileResponse(web / "index.html", media_type="text/html")

    async def static(request):
        name = request.path_params["name"]
        if not re.match(r"^[a-z]+\.(js|css)$", name) or not (web / name).is_file():
            raise ApiError(404, f"no such file: {name}")
        return FileResponse(web / name)

    routes = [
        Route("/v1/models/{path:path}", models, methods=["GET", "POST"]),
        Route("/v1/digits:classify", digits_classify, methods=["POST"]),
        Route("/v1/digits/latent", digits_latent, methods=["GET"]),
        Route("/v1/digits/models", digits_models, methods=["GET"]),
        Route("/", page, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
    ]
    handlers = {ApiError: api_error, HTTPException: http_error, Exception: internal}
    return Starlette(routes=routes, exception_handlers=handlers)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kerasdl.serve",
                                description="Serve every exported model with TensorFlow Serving's REST API, "
                                "and a page to draw digits on.")
    p.add_argument("--models", type=Path, default=Path("saved_models"),
                   help="directory of exports <name>/<version>/ (default: saved_models); each model's newest version is served")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=positive(int), default=8501, help="port (default: 8501, TensorFlow Serving's REST port)")
    p.add_argument("--max-body", type=positive(int), default=MAX_BODY,
                   help=f"largest request body in bytes; larger ones get 413 (default: {MAX_BODY})")
    p.add_argument("--no-batching", action="store_true",
                   help="run every :predict request as its own model call (default: concurrent requests "
                   "to one model are batched into one call)")
    p.add_argument("--quiet", action="store_true", help="no log line per request")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    servables = load_models(args.models)
    import uvicorn

    # TensorFlow leaves about a million long-lived Python objects; every full collection walked
    # them all, stalling every request in flight for ~200 ms once a second under load.
    gc.collect()
    gc.freeze()

    names = ", ".join(f"{s.name} (version {s.version})" for s in servables.values()) or "none"
    log.info("models from %s: %s", args.models, names)
    if not servables:
        log.warning("no exported models in %s: the page will say how to export them", args.models)
    host = f"[{args.host}]" if ":" in args.host else args.host
    log.info("serving on http://%s:%d/  (REST: /v1/models/<name>:predict)", host, args.port)
    config = uvicorn.Config(create_app(servables, args.max_body, batching=not args.no_batching), host=args.host, port=args.port,
                            access_log=not args.quiet, log_level="info", timeout_graceful_shutdown=2)
    try:
        asyncio.run(uvicorn.Server(config).serve())
    except OSError as exc:
        raise UsageError(f"--port {args.port}: cannot listen on {args.host} ({exc.strerror}); pick another port") from None
    return 0


def cli() -> None:
    sys.exit(run_cli(main, "python -m kerasdl.serve"))
