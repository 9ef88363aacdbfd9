"""kerasdl.serve: TensorFlow Serving's REST API over real HTTP against a real server process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

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


def model_calls(url: str, model: str) -> tuple[float, float]:
    """(model calls, instances) so far for `model`, from the server's Prometheus metrics."""
    text = httpx.get(url + "/monitoring/prometheus/metrics", timeout=30).text
    calls = rows = 0.0
    for line in text.splitlines():
        if line.startswith("kerasdl_serve_batch_size_count{") and f'model="{model}"' in line:
            calls += float(line.rsplit(" ", 1)[1])
        if line.startswith("kerasdl_serve_batch_size_sum{") and f'model="{model}"' in line:
            rows += float(line.rsplit(" ", 1)[1])
    return calls, rows


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server, small_models, test_digits):
    import asyncio

    x, _ = test_digits
    flat = np.concatenate([x, x]).reshape(2 * len(x), 784)
    expected = local_predictions(small_models, "linear", flat)
    calls_before, rows_before = model_calls(server.url, "linear")

    async def ask_all():
        async with httpx.AsyncClient(base_url=server.url, timeout=60,
                                     limits=httpx.Limits(max_connections=len(flat))) as c:
            answers = await asyncio.gather(*(c.post("/v1/models/linear:predict", json={"instances": [row.tolist()]})
                                             for row in flat))
        return [a.json()["predictions"][0] for a in answers]

    answers = asyncio.run(ask_all())
    np.testing.assert_allclose(answers, expected, rtol=1e-4, atol=1e-6)
    calls_after, rows_after = model_calls(server.url, "linear")
    assert rows_after - rows_before == len(flat)  # every request went through the model...
    assert calls_after - calls_before < len(flat)  # ...in fewer calls than requests: batched


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
    """64 megapixels in a few hundred kB, with a digit-like stroke: "no ink" cannot be the reason for its 400."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (8000, 8000), 255)
    ImageDraw.Draw(image).rectangle((3800, 2000, 4200, 6000), fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _image(fmt: str, size=(60, 60)) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("L", size, 255)
    ImageDraw.Draw(image).rectangle((size[0] * 0.45, size[1] * 0.2, size[0] * 0.55, size[1] * 0.8), fill=0)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _bad_requests(version: int) -> list[tuple[str, str, dict, int]]:
    """(method, path, httpx keyword arguments, expected status): every way a request can be wrong."""
    good_row = [0.0] * 784
    p = "/v1/models/linear:predict"
    cases = [
        ("POST", p, {"content": b"{not json"}, 400),
        ("POST", p, {"content": b""}, 400),
        ("POST", p, {"content": ('{"instances": [[' + "0.0, " * 783 + "NaN]]}").encode()}, 400),
        ("POST", p, {"content": ('{"instances": [[' + "0.0, " * 783 + "-Infinity]]}").encode()}, 400),
        ("POST", p, {"content": b"[" * 100_000}, 400),
        ("POST", p, {"content": b'{"instances": ' + b"[" * 3000 + b"]" * 3000 + b"}"}, 400),
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
        ("POST", p, {"json": {"instances": [good_row], "signature_name": "nope"}}, 400),
        ("POST", "/v1/models/resnet:predict", {"json": {"instances": [good_row]}}, 404),
        ("POST", f"/v1/models/linear/versions/{version + 7}:predict", {"json": {"instances": [good_row]}}, 404),
        ("POST", "/v1/models/..%2F..%2Fetc%2Fpasswd:predict", {"json": {"instances": [good_row]}}, 400),
        ("GET", "/v1/models/..%2F..%2Fetc", {}, 400),
        ("GET", "/v1/models/linear/versions/abc", {}, 400),
        ("GET", "/v1/models/linear/versions/99999999999999999999", {}, 400),
        ("GET", "/v1/models/linear:predict", {}, 400),
        ("GET", "/v1/models", {}, 400),
        ("PUT", "/v1/models/linear", {}, 400),
        ("POST", "/v1/models/linear/metadata", {"json": {}}, 400),
        ("POST", "/v1/models/linear:classify", {"json": {}}, 400),
        ("GET", "/v1/models/linear/labels/stable", {}, 404),
        ("POST", p, {"content": b"[" * 5_000_000}, 413),
        ("POST", "/v1/digits:classify", {"content": b"plain text, not an image"}, 400),
        ("POST", "/v1/digits:classify", {"content": b""}, 400),
        ("POST", "/v1/digits:classify", {"content": png_bytes(np.full((50, 50), 255))}, 400),
        ("POST", "/v1/digits:classify", {"content": _bomb()}, 400),
        ("POST", "/v1/digits:classify", {"content": _image("TIFF")}, 400),  # PIL reads it; we do not
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
    # a photo over the 1,024 px the server reads: boxes still in the upload's own pixels
    from PIL import Image

    small = Image.open(io.BytesIO(page))
    big = io.BytesIO()
    small.resize((small.width * 6, small.height * 6)).save(big, format="PNG")
    assert small.width * 6 > 1024
    big_cnn = client.post("/v1/digits:read", content=big.getvalue()).json()["classifiers"]["cnn"]
    assert len(big_cnn["digits"]) == 3
    for b, s in zip(big_cnn["digits"], cnn["digits"]):
        assert np.allclose(b["box"], np.array(s["box"]) * 6, atol=6 * 4), (b["box"], s["box"])
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
    bomb = client.post("/v1/digits:classify", content=_bomb())  # it has ink: refused for its size alone
    assert bomb.status_code == 400 and "megapixels" in bomb.json()["error"]
    # the traversal-shaped names that pass TF Serving's URL pattern reach the store's name check
    for path in ("/v1/models/...", "/v1/models/.hidden", "/v1/models/..:predict"):
        answer = client.request("POST" if path.endswith(":predict") else "GET", path, json={"instances": [[0.0] * 784]})
        assert answer.status_code == 404 and "Servable not found" in answer.json()["error"], (path, answer.text)
    assert "no such file" in client.get("/static/serve.py").json()["error"]  # our file check, not the router
    good = client.post("/v1/models/linear:predict", json={"instances": [[0.0] * 784]})
    assert good.status_code == 200 and len(good.json()["predictions"][0]) == 10
    assert server.proc.poll() is None
    assert "Traceback" not in server.output()


def test_tf_serving_answers_where_a_client_can_tell(client, small_models):
    version = artifacts.versions(small_models / "cnn")[-1]
    assert client.get(f"/v1/models/cnn/versions/0{version}").json()["model_version_status"][0]["version"] == str(version)
    head = client.head("/v1/models/cnn")
    assert head.status_code == 200 and head.content == b""
    rows = client.post("/v1/models/linear:predict", json={"instances": [[0.0] * 784] * 1025})
    assert rows.status_code == 400 and "--max-rows" in rows.json()["error"]
    signature = client.post("/v1/models/linear:predict", json={"signature_name": "nope", "instances": [[0.0] * 784]})
    assert signature.status_code == 400 and 'Serving signature name: "nope" not found' in signature.json()["error"]


def test_non_finite_outputs_are_written_as_tf_serving_writes_them(client):
    answer = client.post("/v1/models/linear:predict", json={"instances": [[3e38] * 784]})  # finite in, NaN out
    assert answer.status_code == 200, answer.text
    assert "NaN" in answer.text and not np.all(np.isfinite(answer.json()["predictions"][0]))


def test_metrics_at_tf_servings_path(client, small_models):
    client.post("/v1/models/mlp:predict", json={"instances": [[0.0] * 784]})
    client.get("/v1/models/nosuchmodel")
    text = client.get("/monitoring/prometheus/metrics").text
    version = artifacts.versions(small_models / "mlp")[-1]
    assert f'kerasdl_serve_requests_total{{endpoint="predict",model="mlp",status="200",version="{version}"}}' in text
    assert 'endpoint="status",model="",status="404"' in text and "nosuchmodel" not in text
    assert f'kerasdl_serve_model_version_loaded{{model="cnn",version="{artifacts.versions(small_models / "cnn")[-1]}"}} 1.0' in text
    assert "kerasdl_serve_request_latency_seconds_bucket" in text and "kerasdl_serve_queue_depth" in text


def test_exports_carry_tf_servings_warmup_file(small_models):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    from kerasdl.serve import batching, warmup

    version_dir = small_models / "cnn" / str(artifacts.versions(small_models / "cnn")[-1])
    records = list(tf.data.TFRecordDataset(str(version_dir / "assets.extra" / "tf_serving_warmup_requests")))
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in records]
    signature = artifacts.load_saved_model(version_dir).signatures["serving_default"]
    (key,) = signature.structured_input_signature[1]
    assert [log.predict_log.request.model_spec.name for log in logs] == ["cnn"] * len(batching.BATCH_SIZES)
    shapes = [tuple(d.size for d in log.predict_log.request.inputs[key].tensor_shape.dim) for log in logs]
    assert shapes == [(n, 28, 28, 1) for n in batching.BATCH_SIZES]
    assert [inputs[key].shape[0] for _, inputs in warmup.read(version_dir)] == list(batching.BATCH_SIZES)


def test_uploads_are_read_at_reduced_size_and_only_in_five_formats():
    from PIL import Image

    from kerasdl.serve import page
    from kerasdl.serve.protocol import ApiError

    big = _image("JPEG", (4000, 3000))
    with Image.open(io.BytesIO(page.reduce_upload(big))) as small:
        assert max(small.size) <= page.MAX_SIDE and small.size[0] > small.size[1]
    assert page.reduce_upload(_image("PNG")) == _image("PNG")  # small uploads pass unchanged
    for fmt in ("TIFF", "PPM", "ICO"):
        with pytest.raises(ApiError, match="not a readable image"):
            page.reduce_upload(_image(fmt, (32, 32)))


def test_prune_leaves_versions_a_live_server_has_loaded(tmp_path):
    model_dir = tmp_path / "m"
    for v in (1, 2, 3):
        (model_dir / str(v)).mkdir(parents=True)
        (model_dir / str(v) / "saved_model.pb").write_bytes(b"x")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (model_dir / artifacts.SERVING_DIR).mkdir()
    (model_dir / artifacts.SERVING_DIR / f"1.{os.getpid()}").touch()  # this process: alive
    (model_dir / artifacts.SERVING_DIR / f"2.{dead.stdout.strip()}").touch()  # a server that is gone
    assert artifacts.prune(model_dir, keep=1) == [2]
    assert artifacts.versions(model_dir) == [1, 3]


def test_one_log_line_per_request_and_localhost_by_default(client, server):
    client.get("/v1/models/cnn")
    log = server.output()
    assert "http://127.0.0.1:" in log
    assert '"GET /v1/models/cnn HTTP/1.1" 200' in log


def test_short_load_run_loses_nothing(server, tmp_path):
    out = tmp_path / "load.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "serve_load.py"), "--url", server.url,
                           "--requests", "200", "--clients", "8", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["sent"] == 200 and result["answered"] == 200 and result["answered_ok"] == 200
    assert result["timed_out"] == 0 and result["broken"] == 0 and result["lost"] == 0 and result["shed_503"] == 0
    assert result["recovery_seconds"] is not None
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


def test_an_empty_models_directory_points_at_the_reports_exports(tmp_path, monkeypatch):
    """After `python -m kerasdl.report` the models are in runs/saved_models/, not saved_models/: the
    server's warning names them and the exact command that serves them (checked without TensorFlow)."""
    from kerasdl.serve.app import no_models_line

    monkeypatch.chdir(tmp_path)
    (tmp_path / "saved_models").mkdir()
    assert no_models_line(Path("saved_models")) == "no exported models in saved_models: the page will say how to export them"
    (tmp_path / "runs" / "saved_models" / "cnn" / "1").mkdir(parents=True)
    assert "python -m kerasdl.serve" not in no_models_line(Path("saved_models"))  # a version without a SavedModel
    (tmp_path / "runs" / "saved_models" / "cnn" / "1" / "saved_model.pb").write_bytes(b"")
    assert no_models_line(Path("saved_models")) == (
        "no exported models in saved_models; the report's models (cnn) are in runs/saved_models: "
        "serve them with  python -m kerasdl.serve --models runs/saved_models")
    assert "report's models" not in no_models_line(Path("runs/saved_models"))  # never points at itself


def test_serve_help_and_bad_flags():
    proc = run_module("kerasdl.serve", "--help")
    assert proc.returncode == 0
    for flag in ("--models", "--host", "--port", "--max-body", "--max-rows", "--max-output-values", "--max-concurrent",
                 "--max-queue", "--header-timeout", "--body-timeout", "--keep-alive", "--poll-seconds", "--no-batching", "--quiet"):
        assert flag in proc.stdout
    bad = run_module("kerasdl.serve", "--models", ROOT / "no-such-dir", timeout=120)
    assert bad.returncode == 2 and "no such directory" in bad.stderr


# ---- one server over a directory the tests change while it runs ------------------------------

def save_fragile_model(path) -> None:
    """A SavedModel that doubles its (N, 4) input and fails on any value >= 100: a model call that raises."""
    import tensorflow as tf

    class Fragile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="inputs")])
        def serve(self, x):
            with tf.control_dependencies([tf.debugging.assert_less(x, 100.0, message="value too large")]):
                return {"outputs": x * 2.0}

    module = Fragile()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


@pytest.fixture(scope="module")
def live(small_models, tmp_path_factory):
    """A server over its own copy of linear plus the fragile model, polling every 0.3 s, with small caps."""
    import shutil

    root = tmp_path_factory.mktemp("live_models")
    first = artifacts.versions(small_models / "linear")[-1]
    shutil.copytree(small_models / "linear" / str(first), root / "linear" / "1")
    save_fragile_model(root / "fragile" / "1")
    proc = ServerProcess(root, "--poll-seconds", "0.3", "--max-output-values", "5000", "--header-timeout", "1",
                         "--body-timeout", "3",  # 1 s: 40 uploads of 1.3 MB at once timed out on a busy 2-core machine
                         "--max-concurrent", "1", "--max-queue", "1", "--quiet")
    proc.root, proc.source = root, small_models / "linear" / str(first)
    yield proc
    proc.stop()


def wait_for(predicate, seconds: float = 60):
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def versions_served(url: str, model: str) -> dict:
    answer = httpx.get(f"{url}/v1/models/{model}", timeout=30).json()
    return {int(s["version"]): (s["state"], s["status"]["error_message"]) for s in answer["model_version_status"]}


def test_new_versions_are_picked_up_live_and_broken_ones_never_replace_a_working_one(live):
    import shutil

    model_dir = live.root / "linear"
    row = {"instances": [[0.5] * 784]}
    metrics = lambda: httpx.get(live.url + "/monitoring/prometheus/metrics", timeout=30).text  # noqa: E731
    assert versions_served(live.url, "linear") == {1: ("AVAILABLE", "")}
    broken = model_dir / ".export-tmp"  # written where exports are staged, then published by one rename
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    broken.rename(model_dir / "2")
    status = wait_for(lambda: (s := versions_served(live.url, "linear")).get(2) and s)
    assert status[1] == ("AVAILABLE", "") and status[2][0] == "END" and status[2][1], status
    assert httpx.post(f"{live.url}/v1/models/linear:predict", json=row, timeout=30).status_code == 200
    assert 'kerasdl_serve_model_version_failed{model="linear",version="2"} 1.0' in metrics()
    assert artifacts.prune(model_dir, keep=1) == []  # version 1 is being served: not deleted from under it
    assert (model_dir / "1" / "saved_model.pb").is_file()

    shutil.copytree(live.source, model_dir / "2", dirs_exist_ok=True)  # version 2 completed in place: tried again
    wait_for(lambda: versions_served(live.url, "linear") == {2: ("AVAILABLE", "")})

    staged = model_dir / ".export-new"
    shutil.copytree(live.source, staged)
    staged.rename(model_dir / "3")
    wait_for(lambda: versions_served(live.url, "linear") == {3: ("AVAILABLE", "")})  # 2 unloaded
    answer = httpx.post(f"{live.url}/v1/models/linear/versions/3:predict", json=row, timeout=30)
    assert answer.status_code == 200 and len(answer.json()["predictions"][0]) == 10
    assert httpx.post(f"{live.url}/v1/models/linear/versions/2:predict", json=row, timeout=30).status_code == 404
    assert 'kerasdl_serve_model_version_loaded{model="linear",version="3"} 1.0' in metrics()
    assert artifacts.prune(model_dir, keep=1) == [1, 2]  # no longer served: pruned as usual


def test_a_failing_model_call_fails_its_requests_and_the_batcher_goes_on(live):
    url = f"{live.url}/v1/models/fragile:predict"
    bad = httpx.post(url, json={"instances": [[1.0, 2.0, 3.0, 500.0]]}, timeout=30)
    assert bad.status_code == 500 and "value too large" in bad.json()["error"], bad.text
    good = httpx.post(url, json={"instances": [[1.0, 2.0, 3.0, 4.0]]}, timeout=30)
    assert good.status_code == 200 and good.json()["predictions"] == [[2.0, 4.0, 6.0, 8.0]]
    assert "Traceback" not in live.output()


def test_output_cap_is_named(live):
    answer = httpx.post(f"{live.url}/v1/models/linear:predict", json={"instances": [[0.0] * 784] * 501}, timeout=30)
    assert answer.status_code == 400 and "--max-output-values" in answer.json()["error"]
    assert httpx.post(f"{live.url}/v1/models/linear:predict", json={"instances": [[0.0] * 784] * 500},
                      timeout=30).status_code == 200


def test_overload_is_answered_with_fast_503s_and_the_server_recovers(live):
    import asyncio

    body = json.dumps({"instances": [[0.25] * 784] * 400}).encode()

    async def burst():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=40)) as c:
            return await asyncio.gather(*(c.post(f"{live.url}/v1/models/linear:predict", content=body)
                                          for _ in range(40)))

    answers = asyncio.run(burst())
    codes = [a.status_code for a in answers]
    assert set(codes) == {200, 503}, codes  # shed, never failed or timed out
    assert all("--max-concurrent" in a.json()["error"] and a.headers["retry-after"] == "1"
               for a in answers if a.status_code == 503)
    assert httpx.post(f"{live.url}/v1/models/linear:predict", json={"instances": [[0.0] * 784]},
                      timeout=30).status_code == 200


def test_stalled_and_vanishing_clients_do_not_stop_others(live):
    import socket

    stalled = []
    for _ in range(50):
        s = socket.create_connection(("127.0.0.1", live.port))
        s.sendall(b"POST /v1/models/linear:predict HTTP/1.1\r\nHost: x\r\nContent-Le")  # half a header
        stalled.append(s)
    answer = httpx.post(f"{live.url}/v1/models/linear:predict", json={"instances": [[0.0] * 784]}, timeout=30)
    assert answer.status_code == 200
    for s in stalled:  # closed by the server after --header-timeout 1
        s.settimeout(30)
        assert s.recv(100) == b""
        s.close()
    slow = socket.create_connection(("127.0.0.1", live.port))
    slow.sendall(b"POST /v1/models/linear:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inst")
    slow.settimeout(30)
    assert slow.recv(100).startswith(b"HTTP/1.1 408")  # the body did not come within --body-timeout 3
    slow.close()
    # answered early (no such model: 404 before the body is read), then silent mid-body: uvicorn
    # alone keeps such a socket forever, and a few hundred of them take every connection slot
    early = socket.create_connection(("127.0.0.1", live.port))
    early.sendall(b"POST /v1/models/nope:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
    early.settimeout(30)
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += early.recv(4096)
    assert answer.startswith(b"HTTP/1.1 404"), answer[:100]
    early.sendall(b"[")  # one more byte, then nothing
    while True:  # the server closes it (--header-timeout 1); recv times out after 30 s if not
        chunk = early.recv(4096)
        if not chunk:
            break
    early.close()
    gone = socket.create_connection(("127.0.0.1", live.port))
    gone.sendall(b"POST /v1/models/linear:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"inst")
    gone.close()  # leaves mid-body
    assert httpx.get(f"{live.url}/v1/models/linear", timeout=30).status_code == 200
    assert "Traceback" not in live.output()


def test_port_in_use_is_one_line_and_exit_2(live):
    proc = run_module("kerasdl.serve", "--models", live.root, "--port", live.port, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"--port {live.port}: cannot listen" in proc.stderr and "Traceback" not in proc.stderr


def test_a_tf_serving_model_config_file_sets_versions_and_labels(small_models, tmp_path):
    import shutil

    from kerasdl.serve.protocol import ApiError, parse_path
    from kerasdl.serve.store import ModelStore, read_model_config

    source = small_models / "linear" / str(artifacts.versions(small_models / "linear")[-1])
    for version in (1, 2, 3):
        shutil.copytree(source, tmp_path / "linear" / str(version))
    config = tmp_path / "models.config"
    config.write_text(f"""model_config_list {{ config {{
        name: "digits" base_path: "{tmp_path / 'linear'}" model_platform: "tensorflow"
        model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
        version_labels {{ key: "stable" value: 1 }} version_labels {{ key: "canary" value: 2 }} }} }}""")
    store = ModelStore(tmp_path / "unused", config=read_model_config(config), warm=False, mark=False)
    store.poll()
    assert sorted(store.models["digits"].servables) == [1, 2]  # 3 is on disk but not in the policy
    assert store.find(parse_path("POST", "/v1/models/digits/labels/canary:predict")).version == 2
    status = store.status(parse_path("GET", "/v1/models/digits/labels/stable"))
    assert status["model_version_status"][0]["version"] == "1"
    with pytest.raises(ApiError, match="label beta"):
        store.find(parse_path("GET", "/v1/models/digits/labels/beta"))
    config.write_text("model_config_list { config { name: ")
    bad = run_module("kerasdl.serve", "--model_config_file", config, timeout=120)
    assert bad.returncode == 2 and "not a TF Serving model config" in bad.stderr and "Traceback" not in bad.stderr
