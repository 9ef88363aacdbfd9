"""A model server for every export in saved_models/, speaking TensorFlow Serving's REST API.

    python -m kerasdl.serve [--models saved_models] [--host 127.0.0.1] [--port 8501]

A client written for TensorFlow Serving works against it unchanged:

    GET  /v1/models/<name>[/versions/<v>]              version status
    GET  /v1/models/<name>[/versions/<v>]/metadata     the signature_def of every signature
    POST /v1/models/<name>[/versions/<v>]:predict      {"instances": [...]} -> {"predictions": [...]}
                                                       {"inputs": ...}      -> {"outputs": ...}

Errors are `{"error": "<one line>"}` with 400, 404 or 413, as TensorFlow Serving gives them.
For people rather than programs, `POST /v1/digits:classify` takes an image (PNG/JPEG bytes),
normalises it the MNIST way (`kerasdl.preprocess`) and answers every classifier's ten
probabilities and the encoder's 2-D code; `POST /v1/digits:read` takes a picture of a number
and answers it read digit by digit by every classifier; `GET /v1/digits/latent` gives the test digits' codes
on the autoencoder's and PCA's planes; `/` is a page to draw a digit on (kerasdl/web/).

Each model's newest version is loaded once at start with `tf.saved_model.load` (TensorFlow
Serving's default "latest" policy) and run in a worker thread, off the event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasdl.errors import UsageError, positive, run_cli

log = logging.getLogger("kerasdl.serve")

MAX_BODY = 4 * 1024 * 1024  # bytes; larger requests get 413 before they are parsed
LATENT_POINTS = 2000  # test digits shown on the page's latent planes
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # model names: never a path
ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<tail>/metadata|:predict)?$")
CLASSIFIERS = ("linear", "mlp", "cnn")
EXPORT_COMMANDS = {
    "linear": "python -m kerasdl.mnist linear",
    "mlp": "python -m kerasdl.mnist mlp",
    "cnn": "python -m kerasdl.mnist cnn",
    "encoder": "python -m kerasdl.autoencoder",
    "decoder": "python -m kerasdl.autoencoder",
}
DTYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int32": "DT_INT32", "int64": "DT_INT64",
          "uint8": "DT_UINT8", "string": "DT_STRING", "bool": "DT_BOOL"}


class ApiError(Exception):
    """An answer other than 200: an HTTP status and TensorFlow Serving's one-line error."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Servable:
    """One loaded model version and its signatures."""

    name: str
    version: int
    path: Path
    loaded: object
    signatures: dict = field(default_factory=dict)

    def signature(self, name: str | None):
        key = name or "serving_default"
        if key not in self.signatures:
            raise ApiError(404, f"Serving signature name: \"{key}\" not found in signature def "
                                f"(model {self.name} has: {', '.join(sorted(self.signatures))})")
        return self.signatures[key]


def load_models(models_dir, warm: bool = True) -> dict[str, Servable]:
    """Every model directory under `models_dir` with a SavedModel version, its newest version loaded
    (and, with `warm`, run once at every batch size, so that no request pays for a first call)."""
    import tensorflow as tf

    from kerasdl import artifacts

    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise UsageError(f"--models {models_dir}: no such directory; train a model first "
                         "(python -m kerasdl.mnist cnn) or pass the directory that holds your exports")
    servables = {}
    for child in sorted(models_dir.iterdir()):
        if not child.is_dir() or not NAME.match(child.name):
            continue
        try:
            path = artifacts.resolve(child)
        except UsageError:
            continue  # not an export (e.g. a stray folder)
        version = int(path.name) if path.name.isdigit() else 1
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # a corrupt export must not stop the others from being served
            log.warning("skipping %s: the SavedModel could not be loaded (%s)", path, exc.__class__.__name__)
            continue
        servables[child.name] = Servable(child.name, version, path, loaded, dict(loaded.signatures))
        if warm:
            warm_up(servables[child.name])
    return servables


# ---- TensorFlow Serving's REST API --------------------------------------------------------

def _tensor_info(spec) -> dict:
    dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape.as_list()]
    return {"dtype": DTYPES.get(spec.dtype.name, f"DT_{spec.dtype.name.upper()}"),
            "tensor_shape": {"dim": dims, "unknown_rank": False}, "name": spec.name or ""}


def _input_specs(fn) -> dict:
    return dict(fn.structured_input_signature[1])


def _output_specs(fn) -> dict:
    return dict(fn.structured_outputs)


def status(servable: Servable) -> dict:
    return {"model_version_status": [{"version": str(servable.version), "state": "AVAILABLE",
                                      "status": {"error_code": "OK", "error_message": ""}}]}


def metadata(servable: Servable) -> dict:
    defs = {key: {"inputs": {k: _tensor_info(s) for k, s in _input_specs(fn).items()},
                  "outputs": {k: _tensor_info(s) for k, s in _output_specs(fn).items()},
                  "method_name": "tensorflow/serving/predict"}
            for key, fn in servable.signatures.items()}
    return {"model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": defs}}}


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ApiError(400, f"JSON number {text} is out of range; send finite numbers")
    return value


def _reject_constant(text: str):
    raise ApiError(400, f"JSON value {text} is not allowed; send finite numbers")


def parse_json(body: bytes):
    try:
        return json.loads(body, parse_float=_finite_float, parse_constant=_reject_constant)
    except ApiError:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"JSON Parse error: {str(exc).splitlines()[0]}") from None


def _as_tensor(value, key: str, spec) -> np.ndarray:
    """A JSON value -> an array of the input's dtype and shape, or a 400 naming the input."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise ApiError(400, f"input '{key}': ragged lists; every instance must have the same shape") from None
    if array.dtype.kind not in "biuf":
        raise ApiError(400, f"input '{key}': expected numbers, got {array.dtype.kind == 'U' and 'strings' or array.dtype}")
    if array.size == 0:
        raise ApiError(400, f"input '{key}': empty; send at least one instance")
    expected = spec.shape.as_list()
    if array.ndim != len(expected) or any(e is not None and e != a for e, a in zip(expected, array.shape)):
        want = "(" + ", ".join("-1" if e is None else str(e) for e in expected) + ")"
        raise ApiError(400, f"input '{key}': shape {tuple(array.shape)} does not match the signature's {want}")
    array = array.astype(spec.dtype.as_numpy_dtype)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ApiError(400, f"input '{key}': values out of the {spec.dtype.name} range")
    return array


def _rows_to_columns(instances, inputs: dict) -> dict:
    """TF Serving's row format: a list of instances (values, or objects keyed by input name)."""
    if not isinstance(instances, list) or not instances:
        raise ApiError(400, "'instances' must be a non-empty list")
    keys = list(inputs)
    if all(isinstance(i, dict) for i in instances):
        for i in instances:
            if set(i) != set(keys):
                raise ApiError(400, f"every instance must name exactly the inputs {keys}, got {sorted(i)}")
        return {k: [i[k] for i in instances] for k in keys}
    if len(keys) != 1:
        raise ApiError(400, f"the signature has inputs {keys}: send each instance as an object keyed by them")
    if any(isinstance(i, dict) for i in instances):
        raise ApiError(400, "mixed instances: send all as values or all as objects")
    return {keys[0]: instances}


def parse_predict(servable: Servable, request) -> tuple:
    """Check one :predict request body (already parsed JSON) -> (signature function, input arrays, row format?)."""
    if not isinstance(request, dict):
        raise ApiError(400, "the request body must be a JSON object with 'instances' or 'inputs'")
    if ("instances" in request) == ("inputs" in request):
        raise ApiError(400, "send exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    signature_name = request.get("signature_name")
    if signature_name is not None and not isinstance(signature_name, str):
        raise ApiError(400, "'signature_name' must be a string")
    fn = servable.signature(signature_name)
    inputs = _input_specs(fn)
    if "instances" in request:
        columns = _rows_to_columns(request["instances"], inputs)
    else:
        given = request["inputs"]
        single = len(inputs) == 1 and not (isinstance(given, dict) and set(given) == set(inputs))
        columns = {next(iter(inputs)): given} if single else given
        if not isinstance(columns, dict) or set(columns) != set(inputs):
            raise ApiError(400, f"'inputs' must be an object naming exactly the inputs {sorted(inputs)}")
    tensors = {k: _as_tensor(v, k, inputs[k]) for k, v in columns.items()}
    if len({len(t) for t in tensors.values()}) != 1:
        raise ApiError(400, "every input must have the same number of instances")
    return fn, tensors, "instances" in request


def run_signature(fn, tensors: dict) -> dict:
    """Call a signature function on numpy inputs -> numpy outputs."""
    return {k: v.numpy() for k, v in fn(**tensors).items()}


def format_outputs(outputs: dict, rows: bool) -> dict:
    """Outputs in TF Serving's row ("predictions") or columnar ("outputs") format."""
    if rows:
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values())).tolist()}
        n = len(next(iter(outputs.values())))
        return {"predictions": [{k: v[i].tolist() for k, v in outputs.items()} for i in range(n)]}
    if len(outputs) == 1:
        return {"outputs": next(iter(outputs.values())).tolist()}
    return {"outputs": {k: v.tolist() for k, v in outputs.items()}}


def predict(servable: Servable, request) -> dict:
    """Answer one :predict request body (already parsed JSON) the way TensorFlow Serving does."""
    fn, tensors, rows = parse_predict(servable, request)
    return format_outputs(run_signature(fn, tensors), rows)


BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


def _pad(x: np.ndarray) -> np.ndarray:
    """`x` with zero rows added up to the next size in BATCH_SIZES (larger batches are left as they are)."""
    target = next((b for b in BATCH_SIZES if b >= len(x)), len(x))
    return x if target == len(x) else np.concatenate([x, np.zeros((target - len(x), *x.shape[1:]), x.dtype)])


def warm_up(servable: Servable) -> None:
    """One call of every signature at every batch size the batcher uses."""
    for fn in servable.signatures.values():
        specs = _input_specs(fn)
        if any(None in spec.shape.as_list()[1:] for spec in specs.values()):
            continue
        for size in BATCH_SIZES:
            run_signature(fn, {k: np.zeros((size, *spec.shape.as_list()[1:]), spec.dtype.as_numpy_dtype)
                               for k, spec in specs.items()})


class Batcher:
    """Runs concurrent requests to the same signature as one model call, as TF Serving's batching does.

    No timer: while one call runs (in a worker thread), the requests that arrive queue up,
    and the next call takes all of them (up to `max_batch` instances). A lone request is run
    at once; under load the calls grow and their count per second falls. Batches are padded
    to the next of BATCH_SIZES (TF Serving's `allowed_batch_sizes`), sizes `warm_up` has run
    once already: a batch shape seen for the first time costs oneDNN a slow first call.
    """

    def __init__(self, max_batch: int = BATCH_SIZES[-1]):
        self.max_batch = max_batch
        self.queues: dict = {}

    async def run(self, fn, tensors: dict) -> dict:
        queue = self.queues.get(id(fn))
        if queue is None:
            queue = self.queues[id(fn)] = asyncio.Queue()
            asyncio.get_running_loop().create_task(self._work(fn, queue))
        future = asyncio.get_running_loop().create_future()
        await queue.put((tensors, future))
        return await future

    async def _work(self, fn, queue: asyncio.Queue) -> None:
        from starlette.concurrency import run_in_threadpool

        while True:
            batch = [await queue.get()]
            size = len(next(iter(batch[0][0].values())))
            while size < self.max_batch and not queue.empty():
                item = queue.get_nowait()
                batch.append(item)
                size += len(next(iter(item[0].values())))
            keys = list(batch[0][0])
            joined = {k: _pad(np.concatenate([t[k] for t, _ in batch])) for k in keys}
            try:
                outputs = await run_in_threadpool(run_signature, fn, joined)
            except Exception as exc:  # one bad call fails its requests, never the worker
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            start = 0
            for tensors, future in batch:
                n = len(next(iter(tensors.values())))
                if not future.done():
                    future.set_result({k: v[start: start + n] for k, v in outputs.items()})
                start += n


def find(servables: dict, name: str, version: str | None) -> Servable:
    """The servable for a URL's name and optional version, or TF Serving's 404."""
    servable = servables.get(name) if NAME.match(name) else None
    if servable is None:
        raise ApiError(404, f"Servable not found for request: Latest({name})")
    if version is not None and version != str(servable.version):
        raise ApiError(404, f"Servable not found for request: Specific({name}, {version})")
    return servable


# ---- digits, for people ------------------------------------------------------------------

def classify(servables: dict, image: bytes) -> dict:
    """An uploaded image -> the normalised 28x28 digit and every classifier's ten probabilities."""
    from kerasdl import preprocess

    start = time.perf_counter()
    try:
        digit = preprocess.load(image, "upload")
    except UsageError as exc:
        raise ApiError(400, str(exc)) from None
    answers = {}
    for name in CLASSIFIERS:
        if name not in servables:
            continue
        servable = servables[name]
        fn = servable.signature(None)
        key, spec = next(iter(_input_specs(fn).items()))
        x = digit.reshape((1, *[d for d in spec.shape.as_list()[1:]]))
        probs = next(iter(fn(**{key: x.astype("float32")}).values())).numpy()[0]
        answers[name] = {"version": str(servable.version), "digit": int(probs.argmax()),
                         "probabilities": [round(float(p), 5) for p in probs]}
    latent = {"encoder": None}
    if "encoder" in servables:
        fn = servables["encoder"].signature(None)
        key = next(iter(_input_specs(fn)))
        code = next(iter(fn(**{key: digit.reshape(1, 784)}).values())).numpy()[0]
        latent["encoder"] = [round(float(v), 4) for v in code]
    return {
        "image": np.round(digit, 4).tolist(),
        "classifiers": answers,
        "latent": latent,
        "missing": {name: EXPORT_COMMANDS[name] for name in CLASSIFIERS if name not in servables},
        "milliseconds": round((time.perf_counter() - start) * 1000, 1),
    }


def read_number(servables: dict, image: bytes) -> dict:
    """POST /v1/digits:read: a picture of a number, read digit by digit by every classifier
    (the work is `kerasdl.predict.read_number_by_every_model`)."""
    from kerasdl import predict

    def model(servable: Servable):
        fn = servable.signature(None)
        key, spec = next(iter(_input_specs(fn).items()))
        shape = spec.shape.as_list()[1:]
        return lambda x: next(iter(fn(**{key: x.reshape((len(x), *shape)).astype("float32")}).values())).numpy()

    try:
        return predict.read_number_by_every_model(image, {n: model(servables[n]) for n in CLASSIFIERS if n in servables})
    except UsageError as exc:
        raise ApiError(400, str(exc)) from None


def latent_plane(servables: dict, points: int = LATENT_POINTS, seed: int = 0) -> dict:
    """Section 2.6's planes for the page: `points` MNIST test digits' 2-D codes from the exported
    encoder and from PCA(2) (fit on 10,000 training images), with PCA's mean and components so
    the page can encode a drawing and decode any point of PCA's plane itself."""
    from sklearn.decomposition import PCA

    from kerasdl import data

    try:
        (x_train, _), (x_test, y_test) = data.load_mnist()
    except UsageError as exc:
        raise ApiError(503, f"the latent plane needs MNIST's test set: {exc}") from None
    pick = np.random.default_rng(seed).choice(len(x_test), size=min(points, len(x_test)), replace=False)
    x = x_test[pick].reshape(len(pick), 784).astype("float32") / 255.0
    pca = PCA(n_components=2, random_state=seed).fit(x_train[:10000].reshape(-1, 784).astype("float32") / 255.0)
    plane = {
        "labels": y_test[pick].astype(int).tolist(),
        "pca": {"codes": np.round(pca.transform(x), 3).tolist(), "mean": np.round(pca.mean_, 5).tolist(),
                "components": np.round(pca.components_, 6).tolist()},
        "autoencoder": None,
        "missing": {part: EXPORT_COMMANDS[part] for part in ("encoder", "decoder") if part not in servables},
    }
    if "encoder" in servables:
        fn = servables["encoder"].signature(None)
        key = next(iter(_input_specs(fn)))
        codes = np.concatenate([run_signature(fn, {key: x[i: i + 500]}).popitem()[1] for i in range(0, len(x), 500)])
        plane["autoencoder"] = {"codes": np.round(codes, 3).tolist(), "version": str(servables["encoder"].version)}
    return plane


# ---- HTTP --------------------------------------------------------------------------------

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

    web = Path(__file__).parent / "web"
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

    async def digits_read(request):
        image = await read_body(request, max_body)
        if not image:
            raise ApiError(400, "empty body: send the image's bytes (PNG or JPEG)")
        return JSONResponse(await run_in_threadpool(read_number, servables, image))

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
        Route("/v1/digits:read", digits_read, methods=["POST"]),
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


if __name__ == "__main__":
    cli()
