"""Real handwriting that is not MNIST, rendered like a photographed page: how well does a model read it?

    python -m kerasdl.digits saved_models/cnn [--limit N] [--json]

Two sets, each drawn as dark ink on light, slightly noisy paper and sent through PNG bytes:
- UCI's handwritten digits (scikit-learn's `load_digits`: 1,797 8x8 digits written by 43
  people, none of them MNIST's writers), smoothly upscaled to 48x48 on a 64x64 page;
- MNIST's test digits, upscaled 3x to 84x84 (their 28x28 frame already has its margin).

Each is classified twice by the same SavedModel: the whole page squeezed to 28x28 (what
`kerasdl.predict --resize` used to do) and normalised the MNIST way (`kerasdl.preprocess`).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from kerasdl.errors import UsageError, positive, run_cli

PAPER, NOISE = 0.92, 0.03  # page brightness and the standard deviation of its texture


def _page(ink: np.ndarray, size: int, rng: np.random.Generator) -> bytes:
    """Ink (h, w) in [0, 1] centred on a size x size light page with texture -> PNG bytes."""
    from PIL import Image

    page = np.zeros((size, size), dtype="float32")
    h, w = ink.shape
    top, left = (size - h) // 2, (size - w) // 2
    page[top: top + h, left: left + w] = ink
    gray = PAPER * (1.0 - page) + rng.normal(0.0, NOISE, page.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(gray * 255, 0, 255).round().astype("uint8"), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _upscale(x: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(x.astype("float32"), mode="F").resize((size, size), Image.BICUBIC)
    return np.clip(np.asarray(img, dtype="float32"), 0.0, 1.0)


def uci_pages(limit: int | None = None, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    """scikit-learn's UCI digits (values 0..16) as 64x64 PNG pages, and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images[:limit], digits.target[:limit]
    rng = np.random.default_rng(seed)
    return [_page(_upscale(im / 16.0, 48), 64, rng) for im in images], labels.astype("int64")


def mnist_pages(limit: int | None = None, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    """MNIST's test digits as 84x84 PNG pages, and their labels."""
    from kerasdl import data

    (_, _), (x_test, y_test) = data.load_mnist()
    rng = np.random.default_rng(seed)
    return [_page(_upscale(im / 255.0, 84), 84, rng) for im in x_test[:limit]], y_test[:limit].astype("int64")


def accuracy(saved_model, pages: list[bytes], labels: np.ndarray, way: str) -> float:
    """Share of `pages` the SavedModel reads right after preparing them `way` ('normalized' or 'squeezed')."""
    from kerasdl import predict, preprocess

    prepare = {"normalized": preprocess.load, "squeezed": preprocess.squeeze}[way]
    images, readable = [], []
    for i, page in enumerate(pages):
        try:
            images.append(prepare(page, f"page {i}"))
            readable.append(i)
        except UsageError:  # no ink found: counted as misread
            continue
    if not images:
        return 0.0
    probs = predict.predict(saved_model, np.stack(images))
    return float(np.sum(probs.argmax(1) == labels[readable]) / len(pages))


def evaluate(saved_model, limit: int | None = None) -> dict:
    """Accuracy on both sets, both ways, with the set sizes."""
    results = {}
    for name, make in (("uci_digits", uci_pages), ("mnist_test_rendered", mnist_pages)):
        pages, labels = make(limit)
        results[name] = {"images": len(pages), **{way: round(accuracy(saved_model, pages, labels, way), 4)
                                                   for way in ("squeezed", "normalized")}}
    return results


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kerasdl.digits", description=__doc__.split("\n\n")[0])
    p.add_argument("saved_model", type=Path, help="a classifier export, e.g. saved_models/cnn (its newest version)")
    p.add_argument("--limit", type=positive(int), help="first N digits of each set (default: all 1,797 and 10,000)")
    p.add_argument("--json", action="store_true", help="print only the JSON summary")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    start = time.perf_counter()
    results = evaluate(args.saved_model, args.limit)
    if not args.json:
        print(f"{'set':<22}{'images':>8}{'squeezed':>10}{'normalized':>12}", file=sys.stderr)
        for name, r in results.items():
            print(f"{name:<22}{r['images']:>8}{r['squeezed']:>10.2%}{r['normalized']:>12.2%}", file=sys.stderr)
    print(json.dumps({"saved_model": str(args.saved_model), "seconds": round(time.perf_counter() - start, 1),
                      **results}))
    return 0


def cli() -> None:
    sys.exit(run_cli(main, "python -m kerasdl.digits"))


if __name__ == "__main__":
    cli()
