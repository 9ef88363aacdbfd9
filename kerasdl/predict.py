"""Classify digits with an exported SavedModel, using TensorFlow only (no kerasdl model code).

    python -m kerasdl.predict saved_models/cnn digit.png photo.jpg more.npy [--json]

Images (PNG/JPEG/BMP/GIF, any size, grayscale, colour or with transparency) are normalised
the way MNIST was made (`kerasdl.preprocess`: ink found, cropped, scaled into a 20x20 box,
centred by centre of mass in 28x28). `--raw` skips that for 28x28 images that already are
MNIST-like. .npy arrays of shape (28, 28) or (N, 28, 28), uint8 0..255 or floats in [0, 1],
are taken as they are.

    python -m kerasdl.predict saved_models/cnn house_number.jpg --number [--json]

`--number` reads a number written on one line: the picture is split into its digits
(`kerasdl.preprocess.split_digits`), each normalised the MNIST way and read left to right
(`read_number`, which the server's POST /v1/digits:read and the page share).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from kerasdl.errors import UsageError, entry_point

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def _as_unit_float(pixels: np.ndarray, source: str) -> np.ndarray:
    """Pixels as float32 in [0, 1]: uint8 is divided by 255, floats must already be in [0, 1] or [0, 255]."""
    if pixels.dtype == np.uint8:
        return pixels.astype("float32") / 255.0
    if not (np.issubdtype(pixels.dtype, np.floating) or np.issubdtype(pixels.dtype, np.integer)):
        raise UsageError(f"{source}: dtype {pixels.dtype} is not numeric; save pixels as uint8 or float")
    x = pixels.astype("float32")
    if not np.all(np.isfinite(x)):
        raise UsageError(f"{source}: contains NaN or inf; save finite pixel values (0..255 or 0..1)")
    if x.min() < 0 or x.max() > 255:
        raise UsageError(f"{source}: pixel values span {x.min():g}..{x.max():g}; use 0..255 or 0..1")
    return x / 255.0 if x.max() > 1.0 else x


def read_image(path: Path, raw: bool = False) -> np.ndarray:
    """One image file -> (28, 28) float32 in [0, 1], white digit on black, normalised unless `raw`."""
    from kerasdl import preprocess

    return preprocess.load_raw(path) if raw else preprocess.load(path)


def read_array(path: Path) -> np.ndarray:
    """A .npy file -> (N, 28, 28) float32 in [0, 1]."""
    try:
        pixels = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable .npy array ({exc.__class__.__name__}); save it with numpy.save") from None
    if pixels.shape == (28, 28):
        pixels = pixels[None]
    if pixels.ndim != 3 or pixels.shape[1:] != (28, 28) or len(pixels) == 0:
        raise UsageError(f"{path}: array has shape {pixels.shape}, expected (28, 28) or (N, 28, 28)")
    return _as_unit_float(pixels, str(path))


def read_inputs(paths: list[Path], raw: bool = False) -> tuple[list[str], np.ndarray]:
    """All inputs as one (N, 28, 28) batch, with a label per image for the output lines."""
    labels, images = [], []
    for path in paths:
        if not path.is_file():
            raise UsageError(f"{path}: no such file; pass PNG/JPEG images or .npy arrays")
        if path.suffix.lower() == ".npy":
            batch = read_array(path)
            labels += [str(path)] if len(batch) == 1 else [f"{path}[{i}]" for i in range(len(batch))]
            images.append(batch)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            labels.append(str(path))
            images.append(read_image(path, raw)[None])
        else:
            raise UsageError(f"{path}: unsupported file type {path.suffix or '(none)'}; pass .png, .jpg or .npy")
    return labels, np.concatenate(images)


def predict(saved_model, images: np.ndarray) -> np.ndarray:
    """Class probabilities (N, 10) from a SavedModel (a path or already loaded) for (N, 28, 28) images in [0, 1]."""
    from kerasdl import artifacts

    loaded = saved_model if hasattr(saved_model, "signatures") else artifacts.load_saved_model(saved_model)
    shape = artifacts.serving_input_shape(loaded)
    if int(np.prod(shape)) != 784:
        raise UsageError(f"{saved_model}: the model takes inputs of shape {shape}, not 28x28 images")
    probs = artifacts.serve(loaded, images.reshape((len(images), *shape))).numpy()
    if probs.ndim != 2 or probs.shape[1] != 10:
        raise UsageError(f"{saved_model}: the model outputs shape {probs.shape[1:]}, not 10 class probabilities; "
                         "pass a classifier (linear, mlp or cnn)")
    return probs


def classifier(saved_model) -> Callable[[np.ndarray], np.ndarray]:
    """A SavedModel loaded once, as a function (N, 28, 28) in [0, 1] -> (N, 10) probabilities."""
    from kerasdl import artifacts

    loaded = artifacts.load_saved_model(saved_model)
    return lambda images: predict(loaded, images)


def read_number(source, classify: Callable[[np.ndarray], np.ndarray], name: str | None = None) -> dict:
    """A picture of a number (bytes or a path) -> {"number": "407", "digits": [...]}, read left to right.

    Each digit: its digit, probability, ten probabilities and its box [top, left, bottom, right]
    in the picture's pixels. `classify` maps (N, 28, 28) images in [0, 1] to (N, 10) probabilities.
    NoInkError (a UsageError) when nothing is written; UsageError over preprocess.MAX_DIGITS digits.
    """
    from kerasdl import preprocess

    images, boxes = preprocess.load_digits(source, name)
    return _number(np.asarray(classify(images)), boxes)


def _number(probs: np.ndarray, boxes: list) -> dict:
    digits = [{"digit": int(p.argmax()), "probability": round(float(p.max()), 4),
               "probabilities": [round(float(v), 4) for v in p], "box": box} for p, box in zip(probs, boxes)]
    return {"number": "".join(str(d["digit"]) for d in digits), "digits": digits}


def read_number_by_every_model(image: bytes, classifiers: Mapping[str, Callable[[np.ndarray], np.ndarray]]) -> dict:
    """The body of the server's `POST /v1/digits:read`: one picture of a number, read by every classifier.

    `classifiers` maps a model name to a function (N, 28, 28) float32 in [0, 1] -> (N, 10)
    probabilities. The picture is decoded and split once. Answer (JSON-ready):
    {"classifiers": {name: {"number": "407", "digits": [{digit, probability, probabilities, box}]}},
     "digits": N, "milliseconds": t}. A picture with no ink, or with over preprocess.MAX_DIGITS
    digit-sized marks, raises UsageError (a 400 with its one-line message).
    """
    import time

    from kerasdl import preprocess

    start = time.perf_counter()
    images, boxes = preprocess.load_digits(image, "upload")
    answers = {name: _number(np.asarray(classify(images)), boxes) for name, classify in classifiers.items()}
    return {"classifiers": answers, "digits": len(boxes), "milliseconds": round((time.perf_counter() - start) * 1000, 1)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kerasdl.predict",
                                description="Classify digit images with an exported SavedModel (TensorFlow only).")
    p.add_argument("saved_model", type=Path,
                   help="an exported model, e.g. saved_models/cnn (its newest version) or saved_models/cnn/3")
    p.add_argument("inputs", type=Path, nargs="+",
                   help="images of a digit (PNG/JPEG/BMP/GIF, any size) or .npy arrays of shape (28,28) or (N,28,28)")
    p.add_argument("--raw", action="store_true",
                   help="take 28x28 images as they are (only inverted if dark on light), without MNIST's normalisation")
    p.add_argument("--resize", action="store_true",
                   help="deprecated and ignored: every image is now normalised the MNIST way, whatever its size")
    p.add_argument("--number", action="store_true",
                   help="each image holds a number written on one line: split it into digits and read them "
                        "left to right (at most 20 digits)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON list: per input its digit, probability and all ten probabilities "
                        "(with --number: its number and per digit those and its box)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.raw and args.resize:
        raise UsageError("--raw and --resize contradict each other; pass one of them")
    if args.resize:
        print("python -m kerasdl.predict: --resize is deprecated and has no effect: images of any size are "
              "normalised the MNIST way (use --raw to skip that)", file=sys.stderr)
    if args.number:
        return read_numbers(args)
    labels, images = read_inputs(args.inputs, args.raw)
    probs = predict(args.saved_model, images)
    rows = [{"input": label, "digit": int(p.argmax()), "probability": round(float(p.max()), 4),
             "probabilities": [round(float(v), 4) for v in p]}
            for label, p in zip(labels, probs)]
    show(rows, args.json, lambda r: f"{r['digit']}  {r['probability']:.4f}")
    return 0


def show(rows: list[dict], as_json: bool, answer) -> None:
    """Print `rows` as one JSON list, or a line per input: its name, then `answer(row)`."""
    if as_json:
        print(json.dumps(rows))
        return
    width = max(len(r["input"]) for r in rows)
    for r in rows:
        print(f"{r['input']:<{width}}  {answer(r)}")


def read_numbers(args) -> int:
    """`--number`: each image read as a number; every input checked before the model is loaded."""
    if args.raw or args.resize:
        raise UsageError("--number splits the image into digits itself; drop --raw/--resize")
    for path in args.inputs:
        if not path.is_file():
            raise UsageError(f"{path}: no such file; pass PNG/JPEG images of a number")
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise UsageError(f"{path}: --number takes images (.png, .jpg, .bmp, .gif, .webp), not {path.suffix or '(none)'}")
    classify = classifier(args.saved_model)
    rows = [{"input": str(path), **read_number(path, classify)} for path in args.inputs]
    show(rows, args.json, lambda r: r["number"])
    return 0


cli = entry_point(main, "python -m kerasdl.predict")


if __name__ == "__main__":
    cli()
