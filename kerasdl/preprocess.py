"""Any picture of a digit -> a 28x28 digit made the way MNIST was made. The one place it is done.

MNIST's digits were cut out of scanned forms, scaled so that their larger side fits a 20x20
box (keeping the aspect ratio, anti-aliased), and pasted into a 28x28 frame so that their
centre of mass sits at the centre. `normalize` does the same to any image:

    polarity -> ink in [0, 1] (white on black) -> faint background removed
        -> crop to the ink's bounding box -> larger side scaled to 20 -> centre of mass at (14, 14)

A 28x28 MNIST image already is such a digit and comes back unchanged. `kerasdl.predict`,
`kerasdl.serve` and the drawing page all call `load` / `normalize`; none has its own copy.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from kerasdl.errors import UsageError

SIZE, BOX = 28, 20  # MNIST's frame and the box its digits are scaled into
CENTRE = 14.0  # where MNIST puts the centre of mass (mean over the test set: 13.99, 14.01)
MAX_PIXELS = 25_000_000  # larger images are refused before decoding (decompression bombs)
MIN_CONTRAST = 0.1  # ink this close to the background is no ink
NOISE_SIGMAS = 4  # background noise (its spread estimated on the border) up to this many sigmas is not ink
PEAK_PERCENTILE = 99  # of the ink: stretched to 1 (a robust maximum; 70..99 read UCI's digits alike)
SPECK = 0.02  # blobs with less ink than this share of the largest blob's are not part of the digit


class NoInkError(UsageError):
    """The image holds nothing that stands out from its background."""


def decode(source, name: str = "image") -> np.ndarray:
    """PNG/JPEG/BMP/GIF bytes or a path -> ink as float32 (H, W) in [0, 1], white digit on black.

    Polarity: where the image has transparency (a canvas drawing is ink on transparent),
    alpha is the ink; otherwise the border tells the background, and dark ink on light
    paper is inverted.
    """
    from PIL import Image, UnidentifiedImageError

    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise UsageError(f"{name}: image is {width}x{height}, over {MAX_PIXELS // 1_000_000} megapixels; "
                                 "send a smaller picture of the digit")
            img.seek(0)  # the first frame of an animated GIF
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            if has_alpha:
                rgba = np.asarray(img.convert("RGBA"), dtype="float32") / 255.0
                if rgba[..., 3].min() < 0.99:
                    return rgba[..., 3]
            gray = np.asarray(img.convert("L"), dtype="float32") / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UsageError(f"{name}: not a readable image ({exc.__class__.__name__}); send a PNG, JPEG, BMP or GIF") from None
    return 1.0 - gray if np.median(_border(gray)) > 0.5 else gray


def _border(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])


def clean(ink: np.ndarray, name: str = "image") -> np.ndarray:
    """Remove the background level and its noise (paper texture, JPEG ringing) and stretch the
    ink so that its darkest strokes reach 1, as in MNIST (31% of its ink pixels are >= 0.99).
    A clean MNIST-like image (background 0, strokes at 1) is left as it is."""
    border = _border(ink)
    background = float(np.median(border))
    sigma = 1.4826 * float(np.median(np.abs(border - background)))  # robust to ink touching the border
    floor = background + NOISE_SIGMAS * sigma
    strokes = ink[ink > floor + MIN_CONTRAST]
    if strokes.size == 0:
        raise NoInkError(f"{name}: no ink found (the image is blank or has almost no contrast); "
                         "draw or photograph a digit that stands out from its background")
    peak = float(np.percentile(strokes, PEAK_PERCENTILE))
    return np.clip((ink - floor) / max(peak - floor, 1e-6), 0.0, 1.0).astype("float32")


def digit_box(ink: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of the digit: its blobs above MIN_CONTRAST, without specks (blobs with
    under SPECK of the ink of the largest one: dust, paper grain, JPEG noise), widened to the
    faint anti-aliased edge pixels that touch them."""
    from scipy import ndimage

    mask = ink > MIN_CONTRAST
    blobs, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count > 1:
        mass = ndimage.sum(ink, blobs, index=np.arange(1, count + 1))
        mask = np.isin(blobs, 1 + np.flatnonzero(mass >= SPECK * mass.max()))
    mask = ndimage.binary_dilation(mask, structure=np.ones((3, 3)), iterations=2) & (ink > 0)
    rows, cols = np.nonzero(mask)
    return slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1)


def _resize(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Anti-aliased resize of a float image (Lanczos; clipped, as Lanczos can overshoot)."""
    from PIL import Image

    img = Image.fromarray(x.astype("float32"), mode="F")
    return np.clip(np.asarray(img.resize((width, height), Image.LANCZOS), dtype="float32"), 0.0, 1.0)


def centre_of_mass(x: np.ndarray) -> tuple[float, float]:
    """(row, column) of the intensity-weighted mean pixel."""
    rows, cols = np.indices(x.shape)
    total = x.sum()
    return float((rows * x).sum() / total), float((cols * x).sum() / total)


def normalize(ink: np.ndarray, name: str = "image") -> np.ndarray:
    """Ink (H, W) in [0, 1], white on black -> the (28, 28) float32 digit MNIST would have made."""
    ink = clean(np.asarray(ink, dtype="float32"), name)
    digit = ink[digit_box(ink)]
    h, w = digit.shape
    scale = BOX / max(h, w)
    if scale != 1.0:
        digit = _resize(digit, max(1, round(h * scale)), max(1, round(w * scale)))
    if digit.sum() <= 0:
        raise NoInkError(f"{name}: no ink left after scaling; draw the digit with thicker strokes")
    h, w = digit.shape
    com_row, com_col = centre_of_mass(digit)
    # Integer placement keeps the pixels as they are; clamp so the box stays inside the frame.
    top = int(np.clip(round(CENTRE - com_row), 0, SIZE - h))
    left = int(np.clip(round(CENTRE - com_col), 0, SIZE - w))
    out = np.zeros((SIZE, SIZE), dtype="float32")
    out[top: top + h, left: left + w] = digit
    return out


def load(source, name: str | None = None) -> np.ndarray:
    """An image file or its bytes -> the normalised (28, 28) float32 digit in [0, 1]."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "image")
    return normalize(decode(source, name), name)


def load_raw(source, name: str | None = None) -> np.ndarray:
    """A 28x28 image as it is (only the polarity fixed): the behaviour of `kerasdl.predict --raw`."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "image")
    ink = decode(source, name)
    if ink.shape != (SIZE, SIZE):
        raise UsageError(f"{name}: image is {ink.shape[1]}x{ink.shape[0]}, --raw takes 28x28 only; "
                         "drop --raw to normalise it the MNIST way")
    return ink


def squeeze(source, name: str | None = None) -> np.ndarray:
    """The whole frame scaled to 28x28 with no cropping or centring: the old `--resize`, kept as a baseline."""
    ink = decode(source, name or "image")
    return _resize(ink, SIZE, SIZE)
