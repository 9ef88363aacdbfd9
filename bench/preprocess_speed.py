"""How long does `kerasdl.preprocess.load` take on a 12-megapixel phone photo of a digit, on one core?

    python bench/preprocess_speed.py [--repeats 15] [--size 4032x3024]

Makes one photo-like page (warm paper, a lighting gradient, ruled lines with a margin, a hard
shadow, a blue UCI digit, dust; JPEG quality 90) at the given size, then times `preprocess.load`
on its bytes `--repeats` times (after one warm-up call) with every thread pool held to one thread,
and prints the median, the range and the CPU model.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy is imported
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kerasdl import preprocess  # noqa: E402
from kerasdl.errors import UsageError, positive, run_cli  # noqa: E402


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def photo(width: int, height: int, seed: int = 0) -> bytes:
    """A phone-photo-like JPEG of one handwritten digit on ruled paper, in a shadow."""
    from PIL import Image
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digit = load_digits().images[3] / 16.0
    size = height // 6
    ink = np.asarray(Image.fromarray(digit.astype("float32"), mode="F").resize((size, size), Image.BICUBIC))
    rows = np.arange(height, dtype="float32")[:, None] / height
    cols = np.arange(width, dtype="float32")[None, :] / width
    light = (1.0 - 0.3 * cols) * np.where(cols + 0.4 * rows < 0.35, 0.55, 1.0)
    lines = np.zeros((height, width), dtype="float32")
    for y in range(height // 20, height, height // 14):
        lines[y: y + 4] = 0.35
    lines[:, width // 8: width // 8 + 4] = 0.5
    alpha = np.zeros((height, width), dtype="float32")
    top, left = height // 2, width // 2
    alpha[top: top + size, left: left + size] = np.clip(ink, 0, 1)
    page = np.empty((height, width, 3), dtype="float32")
    for c, (paper, line, pen) in enumerate(zip((0.95, 0.93, 0.86), (0.6, 0.7, 0.95), (0.1, 0.15, 0.55))):
        channel = paper * (1 - lines * (1 - line))
        channel += alpha * (pen - channel)
        page[..., c] = channel * light
    page += rng.normal(0, 0.02, (height, width, 1)).astype("float32")
    for _ in range(10):
        y, x = int(rng.integers(height - 8)), int(rng.integers(width - 8))
        page[y: y + 6, x: x + 6] *= 0.5
    buffer = io.BytesIO()
    Image.fromarray((np.clip(page, 0, 1) * 255).astype("uint8")).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 4032x3024") from None
    if width < 64 or height < 64 or width * height > preprocess.MAX_PIXELS:
        raise argparse.ArgumentTypeError(f"{text}: give 64..{preprocess.MAX_PIXELS // 1_000_000} megapixels")
    return width, height


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/preprocess_speed.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=positive(int), default=15, help="timed calls (default 15; the median is reported)")
    p.add_argument("--size", type=size, default=(4032, 3024), help="photo size WIDTHxHEIGHT (default 4032x3024, 12.2 MP)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    except (AttributeError, OSError):
        pass
    width, height = args.size
    data = photo(width, height)
    digit = preprocess.load(data, "photo")  # warm-up: imports, first allocations
    if digit.shape != (28, 28):
        raise UsageError("the benchmark photo did not normalise to 28x28")
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        preprocess.load(data, "photo")
        times.append((time.perf_counter() - start) * 1000)
    print(f"preprocess.load on a {width}x{height} JPEG ({width * height / 1e6:.1f} MP, {len(data) / 1e6:.1f} MB), "
          f"one core, {args.repeats} runs: median {statistics.median(times):.0f} ms "
          f"(min {min(times):.0f}, max {max(times):.0f}); CPU: {cpu_model()}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "python bench/preprocess_speed.py"))
