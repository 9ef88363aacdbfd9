"""TensorFlow Serving's REST protocol: URLs, request and response bodies, status and metadata, errors.

Everything a TF Serving client can see is decided here (g3doc api_rest.md): the row
("instances"/"predictions") and columnar ("inputs"/"outputs") formats, the signature_def
metadata, and `{"error": "<one line>"}` answers with TF Serving's status codes.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # model names: never a path
ROUTE = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<tail>/metadata|:predict)?$")
DTYPES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "int32": "DT_INT32", "int64": "DT_INT64",
          "uint8": "DT_UINT8", "string": "DT_STRING", "bool": "DT_BOOL"}


class ApiError(Exception):
    """An answer other than 200: an HTTP status and TensorFlow Serving's one-line error."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


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


def find(servables: dict, name: str, version: str | None) -> Servable:
    """The servable for a URL's name and optional version, or TF Serving's 404."""
    servable = servables.get(name) if NAME.match(name) else None
    if servable is None:
        raise ApiError(404, f"Servable not found for request: Latest({name})")
    if version is not None and version != str(servable.version):
        raise ApiError(404, f"Servable not found for request: Specific({name}, {version})")
    return servable


