"""TensorFlow Serving's REST protocol: URLs, request and response bodies, status and metadata, errors.

Everything a TF Serving client can see is decided here (g3doc api_rest.md and its
http_rest_api_handler): the URL patterns and their 400 "Malformed request" answer, the row
("instances"/"predictions") and columnar ("inputs"/"outputs") formats, the signature_def
metadata, and `{"error": "<one line>"}` answers with TF Serving's status codes. Nothing here
touches the event loop: parsing and rendering run in worker threads (kerasdl.serve.app).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # model names we serve: never a path
# TF Serving's two URL patterns (http_rest_api_util.cc), case-insensitive like its RE2 patterns.
PREDICT_PATH = re.compile(r"(?i)/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(classify|regress|predict)")
STATUS_PATH = re.compile(r"(?i)/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?(?:/(metadata))?")
DTYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int32": "DT_INT32", "int64": "DT_INT64",
          "uint8": "DT_UINT8", "string": "DT_STRING", "bool": "DT_BOOL"}
MAX_VERSION = 2 ** 63 - 1  # an int64, as TF Serving parses it


def one_line(exc: BaseException, width: int = 300) -> str:
    """An exception as one line: its class and the first line that says what went wrong
    (TensorFlow's runtime errors start with "Graph execution error:" and where it happened)."""
    noise = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[", "File ")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(noise)]
    text = (useful or lines or [""])[0][:width]
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


class ApiError(Exception):
    """An answer other than 200: an HTTP status and TensorFlow Serving's one-line error."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class ModelPath:
    """What a /v1/models URL asks for: a model, optionally a version or a label, and what of it."""

    name: str
    version: int | None
    label: str | None
    action: str  # "status", "metadata" or "predict"


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (the flags of the same names)."""

    max_rows: int = 1024  # instances per :predict request
    max_output_values: int = 1_000_000  # numbers in one answer


def parse_path(method: str, path: str) -> ModelPath:
    """A /v1/models URL -> what it asks for, or TF Serving's 400 for anything it would not parse."""
    malformed = ApiError(400, f"Malformed request: {method} {path}")
    if method == "POST":
        match = PREDICT_PATH.fullmatch(path)
        if not match:
            raise malformed
        name, version, label, action = match.groups()
        if action.lower() != "predict":
            raise ApiError(400, f"{action} is not served here, only predict: POST {path}")
        action = "predict"
    elif method in ("GET", "HEAD"):
        match = STATUS_PATH.fullmatch(path)
        if not match:
            raise malformed
        name, version, label, metadata = match.groups()
        if not name:
            raise ApiError(400, "Missing model name in request.")
        action = "metadata" if metadata else "status"
    else:
        raise malformed
    if version is not None:
        if int(version) > MAX_VERSION:
            raise ApiError(400, f"Failed to convert version: {version} to numeric.")
        version = int(version)  # "01" is version 1, as in TF Serving
    return ModelPath(name, version, label, action)


# ---- status and metadata -------------------------------------------------------------------

def _tensor_info(spec) -> dict:
    dims = [{"size": str(-1 if d is None else d), "name": ""} for d in spec.shape.as_list()]
    return {"dtype": DTYPES.get(spec.dtype.name, f"DT_{spec.dtype.name.upper()}"),
            "tensor_shape": {"dim": dims, "unknown_rank": False}, "name": spec.name or ""}


def _input_specs(fn) -> dict:
    return dict(fn.structured_input_signature[1])


def _output_specs(fn) -> dict:
    return dict(fn.structured_outputs)


def version_status(version: int, state: str = "AVAILABLE", error: str = "") -> dict:
    """One entry of TF Serving's model_version_status list."""
    return {"version": str(version), "state": state,
            "status": {"error_code": "UNKNOWN" if error else "OK", "error_message": error}}


def metadata(servable) -> dict:
    defs = {key: {"inputs": {k: _tensor_info(s) for k, s in _input_specs(fn).items()},
                  "outputs": {k: _tensor_info(s) for k, s in _output_specs(fn).items()},
                  "method_name": "tensorflow/serving/predict"}
            for key, fn in servable.signatures.items()}
    return {"model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": {"signature_def": defs}}}


# ---- :predict requests ---------------------------------------------------------------------

def _reject_constant(text: str):
    raise ApiError(400, f"JSON value {text} is not allowed; send finite numbers")


def parse_json(body: bytes):
    """A request body -> JSON, or a 400 for malformed or too deeply nested JSON, or NaN/Infinity.
    Numbers are parsed by json's C scanner (a Python hook per number cost 1.3 ms a request);
    overflowing ones (1e999) become inf and are refused with their input by `_as_tensor`."""
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except ApiError:
        raise
    except RecursionError:
        raise ApiError(400, "JSON Parse error: nested too deeply; instances are lists of numbers a few levels deep") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"JSON Parse error: {str(exc).splitlines()[0]}") from None


def _count_rows(value, key: str, limits: Limits) -> None:
    """A 400 naming the cap when an input holds more instances than --max-rows (checked before any copy)."""
    if isinstance(value, list) and len(value) > limits.max_rows:
        raise ApiError(400, f"input '{key}': {len(value)} instances, over the cap of {limits.max_rows} per request "
                            "(--max-rows); split the request")


def _as_tensor(value, key: str, spec) -> np.ndarray:
    """A JSON value -> an array of the input's dtype and shape, or a 400 naming the input."""
    try:
        array = np.asarray(value)
    except (ValueError, RecursionError):
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


def _check_output_size(fn, rows: int, limits: Limits) -> None:
    """A 400 naming the cap when the answer would hold more than --max-output-values numbers."""
    per_row = 0
    for spec in _output_specs(fn).values():
        dims = spec.shape.as_list()[1:]
        if None in dims:
            return  # unknown until the model has run: checked again on the outputs
        per_row += int(np.prod(dims))
    if rows * per_row > limits.max_output_values:
        raise ApiError(400, f"the answer would hold {rows * per_row} numbers, over the cap of "
                            f"{limits.max_output_values} (--max-output-values); send fewer instances")


def parse_predict(servable, body: bytes, limits: Limits = Limits()) -> tuple:
    """One :predict request body -> (signature function, input arrays, row format?), or a 400."""
    request = parse_json(body)
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
        _count_rows(request["instances"], "instances", limits)
        columns = _rows_to_columns(request["instances"], inputs)
    else:
        given = request["inputs"]
        single = len(inputs) == 1 and not (isinstance(given, dict) and set(given) == set(inputs))
        columns = {next(iter(inputs)): given} if single else given
        if not isinstance(columns, dict) or set(columns) != set(inputs):
            raise ApiError(400, f"'inputs' must be an object naming exactly the inputs {sorted(inputs)}")
    for key, value in columns.items():
        _count_rows(value, key, limits)
    tensors = {k: _as_tensor(v, k, inputs[k]) for k, v in columns.items()}
    if len({len(t) for t in tensors.values()}) != 1:
        raise ApiError(400, "every input must have the same number of instances")
    _check_output_size(fn, len(next(iter(tensors.values()))), limits)
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


def render(outputs: dict, rows: bool, limits: Limits = Limits()) -> bytes:
    """The answer's JSON bytes. Non-finite outputs are written as TF Serving writes them
    (`NaN`, `Infinity`, `-Infinity`, json_tensor.cc), never turned into a 500."""
    total = sum(int(v.size) for v in outputs.values())
    if total > limits.max_output_values:
        raise ApiError(400, f"the answer holds {total} numbers, over the cap of {limits.max_output_values} "
                            "(--max-output-values); send fewer instances")
    return json.dumps(format_outputs(outputs, rows), allow_nan=True, separators=(",", ":")).encode()


def to_json(value) -> bytes:
    """Any other answer's JSON bytes (the same writer as `render`)."""
    return json.dumps(value, allow_nan=True, separators=(",", ":")).encode()
