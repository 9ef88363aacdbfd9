"""kerasdl.serve: TensorFlow Serving's REST API over real HTTP against a real server process."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from conftest import ROOT, ServerProcess, run_module
from kerasdl import artifacts


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def test_digits(real_mnist):
    raw = np.load(real_mnist)
    return raw["x_test"][-20:].astype("float32") / 255.0, raw["y_test"][-20:]


def local_predictions(models_dir, name, x):
    return artifacts.serve(artifacts.load_saved_model(models_dir / name), x).numpy()


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels.astype("uint8")).save(buffer, format="PNG")
    return buffer.getvalue()


def test_status_and_metadata_as_tf_serving_gives_them(client, small_models):
    version = str(artifacts.versions(small_models / "cnn")[-1])
    expected = {"model_version_status": [{"version": version, "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}
    assert client.get("/v1/models/cnn").json() == expected
    assert client.get(f"/v1/models/cnn/versions/{version}").json() == expected
    meta = client.get("/v1/models/mlp/metadata").json()
    assert meta["model_spec"]["name"] == "mlp"
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    (spec,) = signature["inputs"].values()
    assert spec["dtype"] == "DT_FLOAT" and [d["size"] for d in spec["tensor_shape"]["dim"]] == ["-1", "784"]
    (out,) = signature["outputs"].values()
    assert [d["size"] for d in out["tensor_shape"]["dim"]] == ["-1", "10"]


def test_predict_row_and_columnar_formats_match_the_saved_model(client, small_models, test_digits):
    x, y = test_digits
    flat = x[:4].reshape(4, 784)
    expected = local_predictions(small_models, "mlp", flat)
    rows = client.post("/v1/models/mlp:predict", json={"instances": flat.tolist()})
    assert rows.status_code == 200
    np.testing.assert_allclose(rows.json()["predictions"], expected, rtol=1e-4, atol=1e-6)
    columns = client.post("/v1/models/mlp:predict", json={"inputs": flat.tolist()})
    np.testing.assert_allclose(columns.json()["outputs"], expected, rtol=1e-4, atol=1e-6)
    named = client.post("/v1/models/mlp:predict",
                        json={"signature_name": "serving_default", "instances": [{"inputs": r} for r in flat.tolist()]})
    np.testing.assert_allclose(named.json()["predictions"], expected, rtol=1e-4, atol=1e-6)
    version = artifacts.versions(small_models / "cnn")[-1]
    images = x[..., None]
    cnn = client.post(f"/v1/models/cnn/versions/{version}:predict", json={"instances": images.tolist()})
    digits = np.argmax(cnn.json()["predictions"], axis=1)
    assert np.mean(digits == y) >= 0.8, digits


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, small_models, test_digits):
    from concurrent.futures import ThreadPoolExecutor

    x, _ = test_digits
    flat = x.reshape(len(x), 784)
    expected = local_predictions(small_models, "linear", flat)

    def ask(i):
        with httpx.Client(base_url=server.url, timeout=60) as c:
            return c.post("/v1/models/linear:predict", json={"instances": [flat[i].tolist()]}).json()["predictions"][0]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(len(flat))))
    np.testing.assert_allclose(answers, expected, rtol=1e-4, atol=1e-6)


def test_classify_normalises_a_photo_like_image_and_asks_every_classifier(client, real_mnist):
    from PIL import Image

    raw = np.load(real_mnist)
    digit, label = raw["x_test"][-1], int(raw["y_test"][-1])
    page = Image.fromarray(255 - digit).resize((90, 90), Image.BICUBIC)  # dark on white, 90x90
    answer = client.post("/v1/digits:classify", content=png_bytes(np.asarray(page)),
                         headers={"Content-Type": "image/png"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert np.asarray(body["image"]).shape == (28, 28)
    assert set(body["classifiers"]) == {"linear", "mlp", "cnn"} and body["missing"] == {}
    for name, result in body["classifiers"].items():
        assert len(result["probabilities"]) == 10 and sum(result["probabilities"]) == pytest.approx(1, abs=1e-3)
    assert body["classifiers"]["cnn"]["digit"] == label
    assert body["latent"]["encoder"] is not None and len(body["latent"]["encoder"]) == 2


def _bomb() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (8000, 8000)).save(buffer, format="PNG")  # 64 megapixels in a few kB
    return buffer.getvalue()


def _bad_requests(version: int) -> list[tuple[str, str, dict, int]]:
    """(method, path, httpx keyword arguments, expected status): every way a request can be wrong."""
    good_row = [0.0] * 784
    p = "/v1/models/linear:predict"
    cases = [
        ("POST", p, {"content": b"{not json"}, 400),
        ("POST", p, {"content": b""}, 400),
        ("POST", p, {"content": b'{"instances": [[NaN]]}'}, 400),
        ("POST", p, {"content": b'{"instances": [[Infinity]]}'}, 400),
        ("POST", p, {"content": ('{"instances": [[' + ", ".join(["1e999"] * 784) + "]]}").encode()}, 400),
        ("POST", p, {"json": {"instances": [["0.5"] * 784]}}, 400),
        ("POST", p, {"json": {"instances": []}}, 400),
        ("POST", p, {"json": {"instances": [good_row, good_row[:-1]]}}, 400),
        ("POST", p, {"json": {"instances": [[0.0] * 783]}}, 400),
        ("POST", p, {"json": {"instances": [[[0.0] * 784]]}}, 400),
        ("POST", p, {"json": {"instances": good_row}}, 400),
        ("POST", p, {"json": {"instances": [good_row], "inputs": [good_row]}}, 400),
        ("POST", p, {"json": {}}, 400),
        ("POST", p, {"json": [good_row]}, 400),
        ("POST", p, {"json": {"instances": "abc"}}, 400),
        ("POST", p, {"json": {"instances": [{"pixels": good_row}]}}, 400),
        ("POST", p, {"json": {"inputs": {"pixels": [good_row]}}}, 400),
        ("POST", p, {"json": {"instances": [good_row], "signature_name": 3}}, 400),
        ("POST", p, {"json": {"instances": [[1e39] * 784]}}, 400),
        ("POST", p, {"json": {"instances": [good_row], "signature_name": "nope"}}, 404),
        ("POST", "/v1/models/resnet:predict", {"json": {"instances": [good_row]}}, 404),
        ("POST", f"/v1/models/linear/versions/{version + 7}:predict", {"json": {"instances": [good_row]}}, 404),
        ("POST", "/v1/models/..%2F..%2Fetc%2Fpasswd:predict", {"json": {"instances": [good_row]}}, 404),
        ("GET", "/v1/models/..%2F..%2Fetc", {}, 404),
        ("GET", "/v1/models/.hidden", {}, 404),
        ("GET", "/v1/models/linear/versions/abc", {}, 404),
        ("GET", "/v1/models/linear:predict", {}, 404),
        ("POST", "/v1/models/linear/metadata", {"json": {}}, 404),
        ("POST", "/v1/models/linear:classify", {"json": {}}, 404),
        ("POST", p, {"content": b"[" * 5_000_000}, 413),
        ("POST", "/v1/digits:classify", {"content": b"plain text, not an image"}, 400),
        ("POST", "/v1/digits:classify", {"content": b""}, 400),
        ("POST", "/v1/digits:classify", {"content": png_bytes(np.full((50, 50), 255))}, 400),
        ("POST", "/v1/digits:classify", {"content": _bomb()}, 400),
        ("GET", "/static/..%2Fserve.py", {}, 404),
    ]
    return cases


def test_read_a_number_with_every_classifier_and_blank_is_400(client, real_mnist):
    """POST /v1/digits:read: a picture of a number -> per classifier its number and digits."""
    from kerasdl import digits

    images, labels = digits.mnist_digits(50)
    picks = [int(np.flatnonzero(labels == d)[0]) for d in (3, 1, 9)]
    page = digits.number_page([images[i] for i in picks], np.random.default_rng(0))
    answer = client.post("/v1/digits:read", content=page, headers={"Content-Type": "image/png"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body["classifiers"]) == {"linear", "mlp", "cnn"} and body["digits"] == 3
    cnn = body["classifiers"]["cnn"]
    assert cnn["number"] == "".join(str(d["digit"]) for d in cnn["digits"])
    assert sum(a == b for a, b in zip(cnn["number"], "319")) >= 2, cnn  # the small cnn reads most digits
    boxes = [[d["box"] for d in answer["digits"]] for answer in body["classifiers"].values()]
    assert boxes[0] == boxes[1] == boxes[2] and [b[1] for b in boxes[0]] == sorted(b[1] for b in boxes[0])
    blank = client.post("/v1/digits:read", content=png_bytes(np.full((60, 200), 235)))
    assert blank.status_code == 400 and "no ink found" in blank.json()["error"]


def test_thirty_odd_bad_requests_get_one_line_errors_and_the_server_keeps_serving(client, server, small_models):
    cases = _bad_requests(artifacts.versions(small_models / "linear")[-1])
    assert len(cases) >= 30
    for method, path, kwargs, status in cases:
        answer = client.request(method, path, **kwargs)
        assert answer.status_code == status, (method, path, answer.status_code, answer.text[:300])
        error = answer.json()["error"]
        assert isinstance(error, str) and error and "\n" not in error, (path, error)
        assert "Traceback" not in answer.text
    good = client.post("/v1/models/linear:predict", json={"instances": [[0.0] * 784]})
    assert good.status_code == 200 and len(good.json()["predictions"][0]) == 10
    assert server.proc.poll() is None
    assert "Traceback" not in server.output()


def test_one_log_line_per_request_and_localhost_by_default(client, server):
    client.get("/v1/models/cnn")
    log = server.output()
    assert "http://127.0.0.1:" in log
    assert '"GET /v1/models/cnn HTTP/1.1" 200' in log


def test_short_load_run_loses_nothing(server, tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "serve_load.py"), "--url", server.url,
                           "--requests", "400", "--clients", "8", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["answered_ok"] == 400 and result["errors"] == 0 and result["lost"] == 0
    assert result["test_accuracy_of_answers"] >= 0.8
    assert result["latency_ms"]["p99"] > 0 and result["predictions_per_second"] > 0


def test_a_directory_without_models_still_serves_and_says_so(tmp_path):
    empty = tmp_path / "none"
    empty.mkdir()
    server = ServerProcess(empty)
    try:
        answer = httpx.post(server.url + "/v1/digits:classify", content=png_bytes(np.eye(40) * 255), timeout=30)
        assert answer.status_code == 200
        assert answer.json()["classifiers"] == {}
        assert answer.json()["missing"]["cnn"] == "python -m kerasdl.mnist cnn"
        assert httpx.get(server.url + "/v1/models/cnn").status_code == 404
    finally:
        server.stop()
    assert "no exported models" in server.output()


def test_serve_help_and_bad_flags():
    proc = run_module("kerasdl.serve", "--help")
    assert proc.returncode == 0
    for flag in ("--models", "--host", "--port", "--max-body", "--no-batching", "--quiet"):
        assert flag in proc.stdout
    bad = run_module("kerasdl.serve", "--models", ROOT / "no-such-dir", timeout=120)
    assert bad.returncode == 2 and "no such directory" in bad.stderr
