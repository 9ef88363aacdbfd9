"""Real handwriting that is not MNIST, rendered like a photographed page: how well does a model read it?

    python -m kerasdl.digits saved_models/cnn [--limit N] [--conditions ...] [--numbers N] [--figure PATH] [--json]

Two sets of real handwriting: UCI's handwritten digits (scikit-learn's `load_digits`: 1,797
8x8 digits written by 43 people, none of them MNIST's writers) and MNIST's test digits.

The plain rows draw each digit as dark ink on light, slightly noisy paper (UCI upscaled to 48x48
on a 64x64 page, MNIST 3x to 84x84) and classify it twice by the same SavedModel: the whole page
squeezed to 28x28 (what `kerasdl.predict --resize` used to do) and normalised the MNIST way.

The condition rows render each digit the way people photograph it, one condition at a time and
all of them in one image (CONDITIONS), every parameter drawn at random per image from a seeded
generator: position, size, darkness, angle, line spacing and colour, shadow edge and depth, JPEG
quality. Each page goes through PNG or JPEG bytes and `kerasdl.preprocess.load`, as an upload does.

`--numbers N` composes N numbers of 2-6 digits from each set (random gaps, a share with touching
neighbours) and reads them with `kerasdl.predict.read_number`: digit count and whole number right.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from kerasdl.errors import UsageError, entry_point, positive

PAPER, NOISE = 0.92, 0.03  # page brightness and the standard deviation of its texture (plain rows)
CONDITIONS = {
    "gradient": "grey noisy paper under a lighting gradient and vignetting",
    "shadow": "a hard-edged shadow over 20-50% of the page",
    "ruled": "ruled notebook paper with a margin line",
    "squared": "squared (grid) paper",
    "pencil": "pencil: grey, grainy, low contrast",
    "ballpoint": "coloured ballpoint: blue, red, green or black",
    "small": "a small digit in a large (2000-2600 px) photo with a page edge and dust",
    "rotation": "the digit rotated up to +-10 degrees",
    "jpeg": "JPEG quality 40-60",
    "combined": "all of the above in one image (the digit 110-220 px tall in the 2000-2600 px photo)",
}
SETS = ("uci", "mnist")
RED = np.array([0.95, 0.3, 0.3], "float32")  # a margin line's colour


def _page(ink: np.ndarray, size: int, rng: np.random.Generator) -> bytes:
    """Ink (h, w) in [0, 1] centred on a size x size light page with texture -> PNG bytes."""
    page = np.zeros((size, size), dtype="float32")
    h, w = ink.shape
    top, left = (size - h) // 2, (size - w) // 2
    page[top: top + h, left: left + w] = ink
    gray = PAPER * (1.0 - page) + rng.normal(0.0, NOISE, page.shape)
    return _encode(gray, "PNG")


def _encode(pixels: np.ndarray, fmt: str, quality: int = 90) -> bytes:
    """Float pixels in [0, 1], (H, W) or (H, W, 3) -> PNG or JPEG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    pixels = pixels * np.float32(255)
    img = Image.fromarray(np.clip(pixels, 0, 255, out=pixels).astype("uint8"))
    img.save(buffer, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _upscale(x: np.ndarray, size: int, width: int | None = None) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(x.astype("float32"), mode="F").resize((width or size, size), Image.BICUBIC)
    return np.clip(np.asarray(img, dtype="float32"), 0.0, 1.0)


def uci_digits(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's UCI digits as ink in [0, 1] (N, 8, 8), and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images[:limit] / 16.0).astype("float32"), digits.target[:limit].astype("int64")


def mnist_digits(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's test digits as ink in [0, 1] (N, 28, 28), and their labels."""
    from kerasdl import data

    (_, _), (x_test, y_test) = data.load_mnist()
    return (x_test[:limit] / 255.0).astype("float32"), y_test[:limit].astype("int64")


def uci_pages(limit: int | None = None, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    """scikit-learn's UCI digits (values 0..16) as 64x64 PNG pages, and their labels."""
    images, labels = uci_digits(limit)
    rng = np.random.default_rng(seed)
    return [_page(_upscale(im, 48), 64, rng) for im in images], labels


def mnist_pages(limit: int | None = None, seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    """MNIST's test digits as 84x84 PNG pages, and their labels."""
    images, labels = mnist_digits(limit)
    rng = np.random.default_rng(seed)
    return [_page(_upscale(im, 84), 84, rng) for im in images], labels


# ---- photographed pages ----------------------------------------------------------------------

def _stroke(digit: np.ndarray, height: int, angle: float = 0.0) -> np.ndarray:
    """A digit's ink cropped to its strokes, rotated by `angle` degrees, scaled to `height` pixels tall."""
    from PIL import Image

    if digit.shape[0] > 8:  # MNIST's frame has a margin: crop it (UCI's 8x8 digits fill theirs)
        rows, cols = np.nonzero(digit > 0.05)
        digit = np.pad(digit[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1], 1)
    h, w = digit.shape
    ink = _upscale(digit, height, max(2, round(w * height / h)))
    if angle:
        img = Image.fromarray(ink, mode="F").rotate(angle, resample=Image.BICUBIC, expand=True)
        ink = np.clip(np.asarray(img, dtype="float32"), 0.0, 1.0)
    return ink


def _lines(shape, rng, squared: bool) -> np.ndarray:
    """Darkness (H, W) of ruled or squared paper's lines: spacing, thickness and tilt drawn at random."""
    height, width = shape
    rows, cols = np.indices(shape, dtype="float32")
    spacing = rng.uniform(0.09, 0.14) * height if not squared else rng.uniform(0.06, 0.1) * height
    tilt = math.tan(math.radians(rng.uniform(-2, 2)))
    thick = rng.uniform(0.8, 2.2) * max(1.0, height / 300)
    phase = rng.uniform(0, spacing)
    dist = np.abs(((rows + tilt * cols - phase) + spacing / 2) % spacing - spacing / 2)
    lines = np.clip(thick / 2 + 0.5 - dist, 0, 1)
    if squared:
        dist = np.abs(((cols - tilt * rows - phase) + spacing / 2) % spacing - spacing / 2)
        lines = np.maximum(lines, np.clip(thick / 2 + 0.5 - dist, 0, 1))
    return lines * rng.uniform(0.25, 0.5)


def render(digit: np.ndarray, condition: str, rng: np.random.Generator) -> bytes:
    """One digit's ink (any size, [0, 1]) on a photographed page under `condition` -> image bytes."""
    if condition not in CONDITIONS:
        raise UsageError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")
    every = condition == "combined"
    large = condition == "small" or every
    if large:
        height = int(rng.integers(2000, 2600))
        width = int(height * rng.uniform(0.7, 1.4))
        size = int(rng.integers(70, 160)) if condition == "small" else int(rng.integers(110, 220))
    else:
        height = int(rng.integers(160, 320))
        width = int(height * rng.uniform(0.8, 1.3))
        size = int(height * rng.uniform(0.35, 0.6))
    angle = rng.uniform(-10, 10) if condition == "rotation" or every else rng.uniform(-2, 2)
    ink = _stroke(digit, size, angle)
    h, w = ink.shape
    top = int(rng.integers(height // 10, max(height // 10 + 1, height - h - height // 10)))
    left = int(rng.integers(width // 10, max(width // 10 + 1, width - w - width // 10)))
    canvas = np.zeros((height, width), dtype="float32")
    canvas[top: top + h, left: left + w] = ink[: height - top, : width - left]

    paper = rng.uniform(0.85, 0.97) * np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 1.0)], "float32")
    noise = rng.uniform(0.01, 0.025)
    rows = np.arange(height, dtype="float32")[:, None] / height  # broadcast: fields are built from a row
    cols = np.arange(width, dtype="float32")[None, :] / width  # and a column, never a full index grid
    light = np.ones((1, 1), dtype="float32")
    if condition == "gradient" or every or large:
        if condition == "gradient" or every:
            paper *= rng.uniform(0.6, 0.85)
            noise = rng.uniform(0.03, 0.05)
        theta = rng.uniform(0, 2 * math.pi)
        ramp = np.cos(theta) * cols + np.sin(theta) * rows
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        radius = (rows - 0.5) ** 2 + (cols - 0.5) ** 2
        light = (1.0 - rng.uniform(0.25, 0.45) * ramp) * (1.0 - rng.uniform(0.2, 0.5) * radius)
    if condition == "shadow" or every:
        theta = rng.uniform(0, 2 * math.pi)
        side = np.cos(theta) * (cols - 0.5) * width + np.sin(theta) * (rows - 0.5) * height
        cut = np.quantile(side[:: max(1, height // 100), :: max(1, width // 100)], 1 - rng.uniform(0.2, 0.5))
        light = light * np.where(side > cut, np.float32(rng.uniform(0.4, 0.65)), np.float32(1.0))
    lines = None
    line_colour = np.array([0.45, 0.6, 0.95], "float32") * rng.uniform(0.7, 1.0)
    margin = None
    if condition in ("ruled", "squared") or every:
        squared = condition == "squared" or (every and rng.random() < 0.5)
        lines = _lines((height, width), rng, squared)
        if rng.random() < 0.5:
            line_colour = np.array([0.5, 0.5, 0.5], "float32")
        if not squared:  # a red margin line left of the digit
            x = int(rng.integers(max(1, left // 3), max(2, left - 2)))
            margin = slice(x, x + max(1, round(width / 300)))
            lines[:, margin] = rng.uniform(0.5, 0.8)

    colour = np.array([0.08, 0.08, 0.1], "float32") * rng.uniform(0.6, 1.6)
    darkness = rng.uniform(0.8, 1.0)
    if condition == "pencil" or (every and rng.random() < 0.5):
        # graphite's own grey, but never lighter than 0.65 of the paper it is on (it only darkens:
        # on the dimmed grey paper of the combined rows an absolute grey came out as light as it)
        colour = np.full(3, min(rng.uniform(0.3, 0.55), 0.65 * float(paper.min())), "float32")
        darkness = rng.uniform(0.6, 0.9)
        canvas *= rng.uniform(0.55, 1.0, canvas.shape).astype("float32")
    elif condition == "ballpoint" or every:
        colour = [np.array([0.1, 0.15, 0.55]), np.array([0.7, 0.1, 0.12]), np.array([0.1, 0.45, 0.2]),
                  np.array([0.1, 0.1, 0.12])][int(rng.integers(4))].astype("float32") * rng.uniform(0.7, 1.3)
    colour = np.clip(colour, 0, 1)
    alpha = canvas * np.float32(darkness)
    grain = rng.standard_normal((height, width), dtype="float32") * np.float32(noise)
    page = np.empty((height, width, 3), dtype="float32")
    for c in range(3):
        channel = np.full((height, width), paper[c], dtype="float32")
        if lines is not None:
            line_c = np.full((1, width), line_colour[c], dtype="float32")
            if margin is not None:
                line_c[:, margin] = RED[c]
            channel -= lines * (1 - line_c) * paper[c]
        channel += alpha * (colour[c] - channel)
        channel *= light
        channel += grain
        page[..., c] = channel
    if large:  # a dark table beyond the page's edge, and dust
        edge = int(rng.uniform(0.03, 0.12) * width)
        page[:, :edge] = rng.uniform(0.15, 0.35) * np.array([0.8, 0.6, 0.45], "float32") + grain[:, :edge, None]
        for _ in range(int(rng.integers(3, 12))):
            y, x, r = int(rng.integers(height)), int(rng.integers(width)), int(rng.integers(1, 4))
            page[max(0, y - r): y + r, max(0, x - r): x + r] *= rng.uniform(0.3, 0.7)
    quality = int(rng.integers(40, 61)) if condition == "jpeg" or every else 90
    fmt = "JPEG" if condition == "jpeg" or large or rng.random() < 0.5 else "PNG"
    return _encode(page, fmt, quality)


def condition_pages(condition: str, which: str, limit: int | None = None,
                    seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    """The first `limit` digits of `which` set ('uci' or 'mnist') rendered under `condition`."""
    images, labels = (uci_digits if which == "uci" else mnist_digits)(limit)
    rng = np.random.default_rng([seed, list(CONDITIONS).index(condition), SETS.index(which)])
    return [render(im, condition, rng) for im in images], labels


def number_page(digits: list[np.ndarray], rng: np.random.Generator, touching: bool = False) -> bytes:
    """Digits' ink written side by side on a light noisy page, left to right -> PNG bytes.

    Height, per-digit size and baseline jitter and the gaps are drawn at random; gaps are
    0.1-0.5 of the height apart, or with `touching` each neighbour overlaps the last by 2-10%
    of the height (the strokes meet, as in quick handwriting)."""
    height = int(rng.integers(50, 100))
    strokes = [_stroke(d, max(8, int(height * rng.uniform(0.85, 1.1))), rng.uniform(-4, 4)) for d in digits]
    gaps = [-height * rng.uniform(0.02, 0.1) if touching else height * rng.uniform(0.1, 0.5) for _ in strokes]
    margin = height // 2
    width = int(sum(s.shape[1] for s in strokes) + sum(gaps[1:]) + 2 * margin + 2)
    canvas = np.zeros((2 * height + 2 * margin, width), dtype="float32")
    x = float(margin)
    for i, ink in enumerate(strokes):
        if i:
            x += gaps[i]
        top = margin + int(rng.integers(0, max(1, height // 6))) + (height - ink.shape[0]) // 2
        left = int(round(x))
        region = canvas[top: top + ink.shape[0], left: left + ink.shape[1]]
        np.maximum(region, ink[: region.shape[0], : region.shape[1]], out=region)
        x += ink.shape[1]
    paper = rng.uniform(0.85, 0.97)
    page = paper * (1 - canvas * rng.uniform(0.8, 1.0)) + rng.normal(0, 0.02, canvas.shape).astype("float32")
    return _encode(page.astype("float32"), "PNG")


def number_pages(which: str, count: int, touching: float = 0.0, seed: int = 0):
    """`count` numbers of 2-6 digits drawn from `which` set ('uci' or 'mnist'), a share `touching` of
    them with touching neighbours -> (pages, the numbers as strings, which ones touch)."""
    images, labels = (uci_digits if which == "uci" else mnist_digits)()
    rng = np.random.default_rng([seed, SETS.index(which), 99])
    pages, numbers, touches = [], [], []
    for _ in range(count):
        picks = rng.integers(0, len(images), int(rng.integers(2, 7)))
        touch = bool(rng.random() < touching)
        pages.append(number_page([images[i] for i in picks], rng, touch))
        numbers.append("".join(str(labels[i]) for i in picks))
        touches.append(touch)
    return pages, numbers, np.array(touches)


def read_numbers(saved_model, pages: list[bytes]) -> list[str]:
    """Each page read as a number by the SavedModel ('' when no ink was found)."""
    from kerasdl import predict

    classify = predict.classifier(saved_model)
    numbers = []
    for i, page in enumerate(pages):
        try:
            numbers.append(predict.read_number(page, classify, f"page {i}")["number"])
        except UsageError:
            numbers.append("")
    return numbers


def number_accuracy(saved_model, which: str, count: int, touching: float = 0.0, seed: int = 0) -> dict:
    """Numbers of 2-6 digits from `which` set: share with the right count of digits and read entirely right,
    for those whose digits do not touch and (if any) for those with touching neighbours."""
    pages, truth, touches = number_pages(which, count, touching, seed)
    read = read_numbers(saved_model, pages)
    result = {}
    for key, chosen in (("apart", ~touches), ("touching", touches)):
        if chosen.any():
            pairs = [(r, t) for r, t, c in zip(read, truth, chosen) if c]
            result[key] = {"numbers": len(pairs), "digit_count_right": round(np.mean([len(r) == len(t) for r, t in pairs]), 4),
                           "number_right": round(np.mean([r == t for r, t in pairs]), 4)}
    return result


def read_pages(saved_model, pages: list[bytes], way: str = "normalized") -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) images the model reads and the (N, 10) probabilities; an unreadable page (no ink
    found) is a blank image, so it counts as misread."""
    from kerasdl import predict, preprocess

    prepare = {"normalized": preprocess.load, "squeezed": preprocess.squeeze}[way]
    images = []
    for i, page in enumerate(pages):
        try:
            images.append(prepare(page, f"page {i}"))
        except UsageError:
            images.append(np.zeros((28, 28), "float32"))
    images = np.stack(images)
    return images, predict.predict(saved_model, images)


def accuracy(saved_model, pages: list[bytes], labels: np.ndarray, way: str) -> float:
    """Share of `pages` the SavedModel reads right after preparing them `way` ('normalized' or 'squeezed')."""
    images, probs = read_pages(saved_model, pages, way)
    readable = images.reshape(len(images), -1).max(axis=1) > 0
    return float(np.sum((probs.argmax(1) == labels) & readable) / len(pages))


def evaluate(saved_model, limit: int | None = None, conditions=(), progress=None) -> dict:
    """Accuracy on both plain sets, both ways, and on each condition for both sets."""
    results = {}
    for name, make in (("uci_digits", uci_pages), ("mnist_test_rendered", mnist_pages)):
        pages, labels = make(limit)
        results[name] = {"images": len(pages), **{way: round(accuracy(saved_model, pages, labels, way), 4)
                                                   for way in ("squeezed", "normalized")}}
    rows = {}
    for condition in conditions:
        row = {}
        for which in SETS:
            pages, labels = condition_pages(condition, which, limit)
            row[which] = round(accuracy(saved_model, pages, labels, "normalized"), 4)
            row[f"{which}_images"] = len(pages)
        rows[condition] = row
        if progress:
            progress(f"{condition:<10} uci {row['uci']:.2%}  mnist {row['mnist']:.2%}")
    if rows:
        results["conditions"] = rows
    return results


def figure(saved_model, path: Path, seed: int = 1):
    """One example per condition (a UCI digit) beside the 28x28 the model read and its answer: a Figure, saved."""
    from matplotlib.figure import Figure
    from PIL import Image

    digits, labels = uci_digits(len(CONDITIONS) * 7)
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(2.2 * 4, 1.25 * len(CONDITIONS) / 2 + 0.4), layout="constrained")
    axes = fig.subplots((len(CONDITIONS) + 1) // 2, 4)
    for k, condition in enumerate(CONDITIONS):
        index = k * 7 + 3
        page = render(digits[index], condition, rng)
        images, probs = read_pages(saved_model, [page])
        photo = Image.open(io.BytesIO(page)).convert("RGB")
        photo.thumbnail((400, 400))
        left, right = axes[k // 2, 2 * (k % 2)], axes[k // 2, 2 * (k % 2) + 1]
        left.imshow(np.asarray(photo))
        left.set_title(condition, fontsize=8)
        right.imshow(images[0], cmap="gray", vmin=0, vmax=1)
        right.set_title(f"read {int(probs[0].argmax())} (true {labels[index]})", fontsize=8)
        for ax in (left, right):
            ax.set_xticks([])
            ax.set_yticks([])
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return fig


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kerasdl.digits", description=__doc__.split("\n\n")[0])
    p.add_argument("saved_model", type=Path, help="a classifier export, e.g. saved_models/cnn (its newest version)")
    p.add_argument("--limit", type=positive(int), help="first N digits of each set (default: all 1,797 and 10,000)")
    p.add_argument("--conditions", nargs="*", choices=list(CONDITIONS), default=list(CONDITIONS), metavar="NAME",
                   help=f"photographed-page rows to measure (default: all: {', '.join(CONDITIONS)}); "
                        "give the flag alone for none")
    p.add_argument("--figure", type=Path, metavar="PATH",
                   help="also save a PNG with one example per condition beside the 28x28 the model read")
    p.add_argument("--numbers", type=positive(int), metavar="N",
                   help="also read N numbers of 2-6 digits composed from each set (split, then read left to right)")
    p.add_argument("--touching", type=float, default=0.2, metavar="SHARE",
                   help="with --numbers: the share of numbers whose neighbouring digits touch (default 0.2; "
                        "reported separately)")
    p.add_argument("--json", action="store_true", help="print only the JSON summary")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if not 0.0 <= args.touching <= 1.0:
        raise UsageError(f"--touching {args.touching}: give a share between 0 and 1")
    if args.figure is not None and args.figure.suffix.lower() != ".png":
        raise UsageError(f"--figure {args.figure}: give a .png path")
    start = time.perf_counter()
    log = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
    results = evaluate(args.saved_model, args.limit, args.conditions, log)
    if not args.json:
        print(f"{'set':<22}{'images':>8}{'squeezed':>10}{'normalized':>12}", file=sys.stderr)
        for name in ("uci_digits", "mnist_test_rendered"):
            r = results[name]
            print(f"{name:<22}{r['images']:>8}{r['squeezed']:>10.2%}{r['normalized']:>12.2%}", file=sys.stderr)
    if args.numbers:
        results["numbers"] = {}
        for which in SETS:
            results["numbers"][which] = number_accuracy(args.saved_model, which, args.numbers, args.touching)
            if log:
                log(f"numbers from {which}: {json.dumps(results['numbers'][which])}")
    if args.figure is not None:
        figure(args.saved_model, args.figure)
    print(json.dumps({"saved_model": str(args.saved_model), "seconds": round(time.perf_counter() - start, 1),
                      **results}))
    return 0


cli = entry_point(main, "python -m kerasdl.digits")


if __name__ == "__main__":
    cli()
