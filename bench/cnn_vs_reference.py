"""Benchmark: our `cnn` (its defaults, through kerasdl's training path) against the keras.io
"Simple MNIST convnet" recipe, run one after the other in this process on this machine.

    python bench/cnn_vs_reference.py [--quick] [--out runs/bench]

Reports for each: training wall time, test accuracy, training images/second, the
exported SavedModel's throughput at batch 1,000 and its single-image latency (median of
200 calls), and the ratio ours/reference. Writes OUT/cnn_vs_reference.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kerasdl import AUTO_PRECISION_HELP, PRECISION_METAVAR, cpu, data, mnist, precision_arg  # noqa: E402
from kerasdl.errors import run_cli, writable_dir  # noqa: E402
from kerasdl.atomic import write_text  # noqa: E402


def reference_model():
    """The keras.io recipe, layer for layer."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ], name="keras_io_reference")


def train_reference(epochs: int, limit: int | None, export_dir: Path) -> dict:
    """keras.io: Adam, batch 128, validation_split 0.1, on the 60,000 training images."""
    import keras

    from kerasdl import artifacts

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = data.load_mnist()
    if limit:
        x_train, y_train, x_test, y_test = x_train[:limit], y_train[:limit], x_test[:limit], y_test[:limit]
    x_train, x_test = data.to_model_input(x_train, "image"), data.to_model_input(x_test, "image")
    model = reference_model()
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=128, epochs=epochs, validation_split=0.1, verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    exported = artifacts.export(model, export_dir, "keras_io_reference", keras_file=False)
    return {"name": "keras.io reference", "epochs": epochs, "train_seconds": seconds, "test_accuracy": float(accuracy),
            "train_images": int(len(x_train) * 0.9), "saved_model": str(exported.saved_model)}


def train_ours(epochs: int | None, limit: int | None, export_dir: Path, run_dir: Path,
               precision: str = "float32") -> dict:
    cfg = mnist.config_for("cnn", epochs=epochs, limit=limit, export_dir=export_dir, run_dir=run_dir,
                           name="cnn_bench", restart=True, precision=precision)
    summary = mnist.train(cfg, verbose=0)
    name = "kerasdl cnn" + ("" if precision == "float32" else f" ({precision})")
    return {"name": name, "precision": precision, "epochs": cfg.epochs, "train_seconds": summary["train_seconds"],
            "test_accuracy": summary["test_accuracy"], "train_images": summary["train_images"],
            "saved_model": summary["saved_model"]}


def inference(saved_model: str, images: np.ndarray) -> dict:
    """SavedModel throughput at batch 1,000 and single-image latency (median of 200 calls)."""
    from kerasdl import artifacts

    loaded = artifacts.load_saved_model(saved_model)
    batch = images[:1000]
    artifacts.serve(loaded, batch)  # warm up
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        artifacts.serve(loaded, batch).numpy()
        runs.append(time.perf_counter() - start)
    one = images[:1]
    artifacts.serve(loaded, one)
    latencies = []
    for _ in range(200):
        start = time.perf_counter()
        artifacts.serve(loaded, one).numpy()
        latencies.append(time.perf_counter() - start)
    return {"images_per_second_batch1000": len(batch) / statistics.median(runs),
            "latency_ms_median": 1000 * statistics.median(latencies)}


def markdown(rows: list[dict], ratio: dict, when: str, machine: str) -> str:
    lines = [f"Measured {when} on {machine}.", "",
             "| model | epochs | train wall s | test acc | train img/s | SavedModel img/s (batch 1000) "
             "| 1-image latency ms |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['name']} | {r['epochs']} | {r['train_seconds']:.1f} | {r['test_accuracy']:.4f} | "
                     f"{r['train_images_per_second']:.0f} | {r['images_per_second_batch1000']:.0f} | "
                     f"{r['latency_ms_median']:.2f} |")
    lines.append(f"| ours / reference | | {ratio['train_seconds']:.2f} | {ratio['test_accuracy']:+.4f} (diff) | "
                 f"{ratio['train_images_per_second']:.2f} | {ratio['images_per_second_batch1000']:.2f} | "
                 f"{ratio['latency_ms_median']:.2f} |")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/cnn_vs_reference.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 epoch on 2,000 images each (a smoke test, not a benchmark)")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="where the JSON and table go (default runs/bench)")
    p.add_argument("--precision", type=precision_arg, metavar=PRECISION_METAVAR, default="float32",
                   help="Keras dtype policy of our cnn (default float32); the reference stays float32, as published; " + AUTO_PRECISION_HELP)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    out = writable_dir(args.out, "--out")
    epochs_ref, epochs_ours, limit = (1, 1, 2000) if args.quick else (15, None, None)

    print("bench: training the keras.io reference", file=sys.stderr)
    ref = train_reference(epochs_ref, limit, out / "models")
    print("bench: training kerasdl cnn (its defaults)", file=sys.stderr)
    ours = train_ours(epochs_ours, limit, out / "models", out / "cnn_bench", args.precision)
    (_, _), (x_test, _) = data.load_mnist()
    images = data.to_model_input(x_test[:1000], "image")
    for row in (ref, ours):
        row.update(inference(row["saved_model"], images))
        row["train_images_per_second"] = row["train_images"] * row["epochs"] / row["train_seconds"]
    ratio = {k: ours[k] / ref[k] for k in ("train_seconds", "train_images_per_second",
                                           "images_per_second_batch1000", "latency_ms_median")}
    ratio["test_accuracy"] = ours["test_accuracy"] - ref["test_accuracy"]
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    from tensorflow.python.util import _pywrap_util_port  # which kernels both models ran on (kerasdl.use_onednn)

    onednn = bool(_pywrap_util_port.IsMklEnabled())
    machine = (f"{cpu()['text']}; {platform.python_implementation()} {platform.python_version()}; "
               f"TensorFlow's oneDNN kernels {'on' if onednn else 'off'}")
    result = {"quick": args.quick, "when": when, "machine": machine, "onednn": onednn, "reference": ref, "ours": ours,
              "ours_over_reference": ratio}
    write_text(out / "cnn_vs_reference.json", json.dumps(result, indent=2))
    write_text(out / "cnn_vs_reference.md", markdown([ref, ours], ratio, when, machine))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "python bench/cnn_vs_reference.py"))
