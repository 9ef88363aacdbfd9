"""Any picture of digits -> 28x28 digits made the way MNIST was made. The one place it is done.

A photograph first becomes ink (`decode`), on a copy at most WORK_SIDE pixels wide:

    colour -> each pixel as dark as its darkest channel (blue, red or pencil ink all count)
        -> the paper modelled locally (a grey closing wider than a stroke: gradients and
           vignetting are paper, not ink; hard lighting edges, a shadow's or the page's against
           the table, found as long straight steps, placed to a pixel, and each side closed on
           its own)
        -> ink = darkening relative to that paper -> the noise floor removed (raised where the
           grain is larger: in a shadow, on the table) -> a stroke bridged across a lighting edge
        -> ruled, squared and margin lines removed (thin straight structures across most of the
           page; their own ink subtracted, so strokes on them stay, and bridged where a stroke
           as dark as a line crossed it) -> specks dropped -> the darkest strokes stretched to 1

MNIST's digits were cut out of scanned forms, scaled so that their larger side fits a 20x20
box (keeping the aspect ratio, anti-aliased), and pasted into a 28x28 frame so that their
centre of mass sits at the centre. `normalize` does the same to ink:

    faint background removed -> the main blob and the blobs near it (far marks dropped)
        -> cropped -> larger side scaled to 20 -> centre of mass at (14, 14)

`split_digits` cuts a written number into its digits (strokes grouped by columns, a group much
wider than a digit cut at its thinnest column), left to right, each then normalised the same way.
A 28x28 MNIST image already is such a digit and comes back unchanged. `kerasdl.predict`,
`kerasdl.serve` and the drawing page all call `load` / `normalize` / `load_digits`; none has its own copy.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasdl.errors import UsageError

SIZE, BOX = 28, 20  # MNIST's frame and the box its digits are scaled into
CENTRE = 14.0  # where MNIST puts the centre of mass (mean over the test set: 13.99, 14.01)
MAX_PIXELS = 25_000_000  # larger images are refused before decoding (decompression bombs)
WORK_SIDE = 1000  # photographs are read at most this many pixels on their longer side (JPEG: decoded so)
SHADOW_STEP = 0.15  # a straight edge in the paper's log brightness this high is a hard shadow's or the page's
EDGE = 5  # pixels: without a hard lighting edge, the paper is taken as the darkest within this window (soft edges are no ink)
SMALL_SIDE = 128  # an image with a shorter side than this is a crop: one paper level, not a local model
MIN_CONTRAST = 0.1  # ink this close to the background is no ink
GRAIN_BLOCK = 32  # pixels: the grain is measured per block this size (a shadow's grain is larger)
NOISE_SIGMAS = 4  # background noise (its spread estimated robustly) up to this many sigmas is not ink
PEAK_PERCENTILE = 99  # of the ink: stretched to 1 (a robust maximum; 70..99 read UCI's digits alike)
LINE_PIECES = 0.4  # thin pieces in one column (row) spanning this share of the picture's height (width) are a line
LINE_THIN = 0.025  # ... each piece at most this share of the picture wide (a digit's stroke that long is wider)
SPECK = 0.02  # blobs with less ink than this share of the largest blob's are not part of the digit
NEAR = 0.75  # blobs further from the main blob than this many times its larger side are other marks
LINE_SPAN = 0.7  # a straight structure covering this share of the page's width (or height) is a ruled line
LINE_GRID_SPAN = 0.45  # ... or this share, at the median angle of three or more found lines (ruled, squared paper)
LINE_MARGIN = 0.05  # a ruled line's ink, and this much more, is taken away where it runs
LINE_MIN_SIDE = 64  # pictures smaller than this (on their shorter side) have no ruled lines removed
LINE_ALONE = 0.5  # ... and is seen alone (no stroke beside it) along at least this share of the page
LINE_AVERAGE = 9  # pixels: lines are looked for in the ink averaged this far along them
BRIDGE_WIDE = 3  # a stroke is bridged across a removed line where it covers this many + 1 of 2 * this - 1 pixels along it
LINE_PIECE = 64  # pixels: a line's own ink is measured along it piece by piece this long
LINE_TILT = 12.0  # ruled lines are looked for up to this many degrees off horizontal and vertical
WIDE = 1.5  # a group wider than this many times the number's height (and 1.8 typical digits) is digits touching
NECK = 0.4  # ... cut where its column of least ink has under this share of its typical column's (a neck, not a stroke)
LIGHT = 0.2  # a group with less ink than this share of the median group's, and shorter than
SHORT = 0.75  # ... this share of the number's height, is a stray mark of its neighbour, not a digit
MAX_DIGITS = 20  # more digit-sized groups than this in one picture is not a number


class NoInkError(UsageError):
    """The image holds nothing that stands out from its background."""


def _no_ink(name: str) -> NoInkError:
    return NoInkError(f"{name}: no ink found (the image is blank, only ruled lines or noise, or has almost no "
                      "contrast); draw or photograph a digit that stands out from its background")


@dataclass
class Page:
    """The ink of a decoded picture, and how much smaller it is than the original (boxes map back)."""

    ink: np.ndarray  # float32 (H, W) in [0, 1], white ink on black
    scale: float  # original pixels per ink pixel (>= 1)


def _read(source, name: str):
    """Bytes or a path -> (RGB float32 array at working size, scale) or (alpha ink, 1.0) for drawings."""
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
                    return rgba[..., 3], 1.0
            factor = max(width, height) / WORK_SIDE
            if factor > 1 and img.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 size: 12 MP in ~20 ms
                img.draft("RGB", (math.ceil(width / factor), math.ceil(height / factor)))
            rgb = img.convert("RGB")
            if max(rgb.size) > 1.25 * WORK_SIDE:  # (a draft-decoded JPEG is already near WORK_SIDE)
                rgb = rgb.resize((max(1, round(width / factor)), max(1, round(height / factor))), Image.BOX)
            return np.asarray(rgb, dtype="float32") / 255.0, width / rgb.size[0]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UsageError(f"{name}: not a readable image ({exc.__class__.__name__}); "
                         "send a PNG, JPEG, BMP, GIF or WebP") from None


def decode_page(source, name: str = "image") -> Page:
    """PNG/JPEG/BMP/GIF/WebP bytes or a path -> its ink (white on black, paper and ruled lines out)."""
    pixels, scale = _read(source, name)
    if pixels.ndim == 2:  # a drawing on a transparent canvas: alpha is the ink
        return Page(pixels, scale)
    return Page(photo_ink(pixels, name), scale)


def decode(source, name: str = "image") -> np.ndarray:
    """PNG/JPEG/BMP/GIF/WebP bytes or a path -> ink as float32 (H, W) in [0, 1], white digit on black.

    Where the image has transparency (a canvas drawing is ink on transparent), alpha is the
    ink; otherwise `photo_ink` finds it (large images are read at WORK_SIDE pixels).
    """
    return decode_page(source, name).ink


def _border(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x[0], x[-1], x[:, 0], x[:, -1]])


def paper_and_ink(rgb: np.ndarray) -> tuple[np.ndarray, list]:
    """RGB in [0, 1] -> darkening relative to the local paper, in [0, 1] (0: paper, 1: black), and
    the hard lighting edges it found (`_Edge`s, empty for a small crop or even lighting).

    Each pixel is as dark as its darkest channel, so coloured ink keeps its contrast. Light ink
    on a dark ground (the typical pixel nearer the darkest than the lightest) is turned around first. The paper
    is a grey closing (a maximum then a minimum filter) wider than a stroke: it follows gradients
    and keeps a hard shadow's edge as an edge, while strokes narrower than it become paper.
    """
    from scipy import ndimage

    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    dark = np.minimum(np.minimum(red, green), blue)
    grey = (red + green + blue) / 3
    low, middle, high = np.percentile(grey[::2, ::2], [0.5, 50, 99.5])
    short = min(dark.shape)
    if high - middle > 2 * (middle - low) + 0.05:  # the rare extreme (the ink) is light: light ink on dark
        # ... unless the light part is a wide area, not strokes: the lit part of a page mostly in
        # shadow (a window a quarter of the picture across, all light: wider than any stroke, once
        # thin dark lines in it are closed, so that ruled or squared lines across it do not count;
        # the erosion is a separable minimum filter: a 12-MP photo's copy in a few milliseconds)
        light = np.pad(grey[::2, ::2] > (middle + high) / 2, 2, mode="edge")  # the closing's border as it is
        light = ndimage.binary_closing(light, structure=np.ones((5, 5)))[2:-2, 2:-2]
        wide = max(3, min(light.shape) // 4)
        if short < SMALL_SIDE or not ndimage.minimum_filter(light.view(np.uint8), size=wide).any():
            dark = 1.0 - np.maximum(np.maximum(red, green), blue)
    edges = []
    if short < SMALL_SIDE:
        paper = float(np.median(_border(dark)))
    else:
        width = int(np.clip(short // 4, 32, 160))
        smooth = ndimage.uniform_filter(dark, 3)
        paper = _closing(smooth, width)
        edges = _lighting_edges(paper, smooth)
        if edges:
            # Each side of a hard shadow's (or the page's) edge gets its own paper: a closing across
            # the edge would give a stroke beside it the other side's level, and a shadow's corner
            # would become a wedge of ink. Each side is closed without the edge's own ramp (its
            # pixels are neither side's paper); on the ramp the darker side's paper is taken (no
            # line of ink along the edge), and `_bridge` later gives a stroke crossing it its ink.
            rows, cols = np.indices(dark.shape, dtype="float32")
            regions = np.zeros(dark.shape, dtype=np.int32)
            ramp = np.zeros(dark.shape, dtype=bool)
            for j, edge in enumerate(edges):
                edge.side = edge.distance(rows, cols)
                regions |= (edge.side > 0).astype(np.int32) << j
                ramp |= np.abs(edge.side) < edge.ramp / 2 + 1.5
            present = np.flatnonzero(np.bincount(regions[~ramp], minlength=1 << len(edges)))
            closed = {int(k): _closing(smooth, width, (regions == k) & ~ramp) for k in present}
            for k in range(1 << len(edges)):  # an area only the ramp reaches (a corner): its neighbour's paper
                closed.setdefault(k, closed[min(closed, key=lambda q: bin(q ^ k).count("1"))])
            levels = np.stack([closed[k] for k in range(1 << len(edges))])
            paper = np.take_along_axis(levels, regions[None], axis=0)[0]
            for j, edge in enumerate(edges):
                r, c = np.nonzero(np.abs(edge.side) < edge.ramp / 2 + 1.5)
                k = regions[r, c]
                paper[r, c] = np.minimum(levels[k & ~(1 << j), r, c], levels[k | (1 << j), r, c])
        else:
            # A few pixels on the dark side of a soft edge still see the lighter paper: take the
            # darker paper within them, so the edge is no thin line of ink.
            paper = ndimage.minimum_filter(paper, size=max(EDGE, 2 * closing_step(width) + 1))
    return np.clip(1.0 - dark / np.maximum(paper, 1 / 255), 0.0, 1.0).astype("float32"), edges


def _bridge(ink: np.ndarray, edges: list) -> None:
    """Across each lighting edge's own pixels (measured against the darker side's paper, where a
    stroke fades) give `ink` (its noise floor removed) the stroke's ink where it has ink just
    beyond on both sides, going from one side's to the other's: a stroke that crosses the edge is
    whole again, paper on either side stays paper. In place."""
    for edge in edges:
        norm = math.hypot(1.0, edge.tilt)  # the distance's gradient: the edge's normal, tilted
        side = edge.side / norm  # pixels from the edge
        reach = edge.ramp / 2 + 2.5  # the edge's ramp, the darker paper beside it, the blur
        r, c = np.nonzero(np.abs(side) < reach)
        step_c, step_r = (edge.cos + edge.tilt * edge.sin) / norm, (edge.sin - edge.tilt * edge.cos) / norm
        beyond = []
        for sign in (-1.0, 1.0):
            move = sign * (reach + 1) - side[r, c]
            rr = np.clip(np.rint(r + move * step_r).astype(int), 0, ink.shape[0] - 1)
            cc = np.clip(np.rint(c + move * step_c).astype(int), 0, ink.shape[1] - 1)
            beyond.append(ink[rr, cc])
        # a stroke on both sides: its ink goes from one side's to the other's across the edge
        t = np.clip((side[r, c] + reach + 1) / (2 * reach + 2), 0.0, 1.0)
        across = np.where(np.minimum(*beyond) > 0, (1 - t) * beyond[0] + t * beyond[1], 0.0)
        ink[r, c] = np.maximum(ink[r, c], across)


def _closing(x: np.ndarray, width: int, inside: np.ndarray | None = None) -> np.ndarray:
    """A grey closing (maximum then minimum filter, `width` square) of `x` as if the page went on
    beyond its border as it is at the border (a table's strip or a shadow's corner there stays
    dark; a mirrored or once-extended border would close it). With `inside`, only those pixels
    count: the closing of that area alone, extended to the pixels around it.

    It runs on blocks of `closing_step(width)` pixels (each block's maximum: the first part of the
    closing's maximum anyway), so a 160-pixel closing costs what a 32-pixel one does; the paper it
    estimates is smooth, and its edges come out at most a block off."""
    from scipy import ndimage

    f = closing_step(width)
    height, full_width = x.shape
    rows, cols = -(-height // f), -(-full_width // f)
    fill = ((0, rows * f - height), (0, cols * f - full_width))
    if inside is not None:
        x = np.where(inside, x, 0.0)
        inside = np.pad(inside, fill, mode="edge").reshape(rows, f, cols, f).any(axis=(1, 3))
    x = np.pad(x, fill, mode="edge").reshape(rows, f, cols, f).max(axis=(1, 3))
    size = max(1, round(width / f)) | 1  # odd: the window centred, so the closing never darkens
    pad = size // 2 + 1
    x = np.pad(x, pad, mode="edge")
    if inside is not None:
        inside = np.pad(inside, pad, mode="edge")
    lifted = ndimage.maximum_filter(x, size=(size, size), mode="nearest")
    if inside is not None:
        lifted = np.where(inside, lifted, 2.0)
    closed = ndimage.minimum_filter(lifted, size=(size, size), mode="nearest")[pad:-pad, pad:-pad]
    return np.repeat(np.repeat(closed, f, axis=0), f, axis=1)[:height, :full_width]


def closing_step(width: int) -> int:
    """The block side `_closing` works on for a closing `width` pixels wide."""
    return max(1, width // 32)


@dataclass
class _Edge:
    """A straight lighting edge at full resolution: `distance` is a pixel's signed distance from it
    (positive on one side; times hypot(1, tilt), within 0.1% at the few degrees a placed edge
    turns), the edge running at `tilt` off the Hough line (cos, sin, offset);
    `ramp` is how many pixels the brightness takes to go from one side's to the other's."""

    cos: float
    sin: float
    offset: float
    tilt: float
    ramp: float
    side: np.ndarray | None = field(default=None, repr=False, compare=False)  # `distance` of every pixel, once computed

    def distance(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        along = rows * self.cos - cols * self.sin
        return cols * self.cos + rows * self.sin - self.offset - self.tilt * along


def _lighting_edges(paper: np.ndarray, smooth: np.ndarray) -> list[_Edge]:
    """Hard edges in the paper (a shadow's edge, the page's edge against the table): long straight
    steps in its brightness, found with Canny and a Hough transform on a copy ~200 pixels across,
    then placed to a pixel on `smooth` (the picture itself: the Hough line is up to a few pixels
    off, and a stroke beside the edge measured against the wrong side's paper fades or grows)."""
    from skimage.feature import canny
    from skimage.transform import hough_line, hough_line_peaks

    f = max(1, min(paper.shape) // 200)
    small = np.log(np.maximum(paper[::f, ::f], 1 / 255))
    edges = canny(small, sigma=1.5, low_threshold=0.03, high_threshold=0.08)
    short = min(small.shape)
    if edges.sum() < 0.3 * short:
        return []
    votes, angles, dists = hough_line(edges, theta=np.linspace(-np.pi / 2, np.pi / 2, 180, endpoint=False))
    rows, cols = np.indices(small.shape)
    log_smooth = np.log(np.maximum(smooth, 1 / 255))
    found = []
    for _, angle, dist in zip(*hough_line_peaks(votes, angles, dists, num_peaks=4, threshold=0.35 * short,
                                                min_distance=10, min_angle=10)):
        side = cols * np.cos(angle) + rows * np.sin(angle) - dist  # signed distance in copy pixels
        near = (np.abs(side) > 3) & (np.abs(side) < 8)
        above, below = small[near & (side > 0)], small[near & (side < 0)]
        if above.size < short or below.size < short or abs(np.median(above) - np.median(below)) < SHADOW_STEP:
            continue  # not a step in the lighting along its length
        found.append(_place_edge(log_smooth, float(angle), float(dist) * f, reach=3 * f + 6))
        if len(found) == 3:
            break
    return found


def _place_edge(log_paper: np.ndarray, angle: float, offset: float, reach: int, piece: int = 32) -> _Edge:
    """The edge near the line (angle, offset), placed on `log_paper`: its brightness profile across
    the line (the median over each `piece` pixels along it, so strokes crossing it barely count),
    where each profile steps from one side's level to the other's, and a straight line fitted to
    those places. Falls back to the line as given where too few pieces show a clear step."""
    height, width = log_paper.shape
    cos, sin = math.cos(angle), math.sin(angle)
    corners = [r * cos - c * sin for r in (0, height - 1) for c in (0, width - 1)]
    along = np.arange(math.floor(min(corners)), math.ceil(max(corners)) + 1, dtype="float32")
    across = np.arange(-reach, reach + 1, dtype="float32")
    cols = np.rint((offset + across[None, :]) * cos - along[:, None] * sin).astype(int)
    rows = np.rint((offset + across[None, :]) * sin + along[:, None] * cos).astype(int)
    inside = ((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)).all(axis=1)
    along, rows, cols = along[inside], rows[inside], cols[inside]
    count = len(along) // piece  # whole pieces (a last short one left out)
    if count < 3:
        return _Edge(cos, sin, offset, 0.0, 2.0)
    cut = count * piece
    values = log_paper[rows[:cut], cols[:cut]].reshape(count, piece, len(across))
    profiles = np.median(values, axis=1)  # (pieces, across)
    low = np.median(profiles[:, : reach // 2], axis=1, keepdims=True)
    high = np.median(profiles[:, -(reach // 2):], axis=1, keepdims=True)
    step = (np.abs(high - low) >= SHADOW_STEP / 2)[:, 0]  # a clear step in this piece
    share = np.clip((profiles - low) / np.where(high == low, 1.0, high - low), 0.0, 1.0)  # 0 on one side, 1 on the other
    places = (reach + 0.5 - share.sum(axis=1))[step]  # an ideal step there has this many bins at 1
    where = along[:cut].reshape(count, piece).mean(axis=1)[step]
    ramps = (((share > 0.1) & (share < 0.9)).sum(axis=1) / 0.8)[step]
    if len(places) < 3:
        return _Edge(cos, sin, offset, 0.0, 2.0)
    keep = np.ones(len(places), dtype=bool)
    for _ in range(2):  # a least-squares line, then again without the pieces more than 2 pixels off it
        tilt, shift = np.polyfit(where[keep], places[keep], 1)
        keep = np.abs(places - (tilt * where + shift)) <= 2.0
        if keep.sum() < 3:
            return _Edge(cos, sin, offset, 0.0, 2.0)
    return _Edge(cos, sin, offset + float(shift), float(tilt), float(np.clip(np.median(ramps), 1.0, 8.0)))


def _along(ink: np.ndarray, axis: int, level: float) -> np.ndarray:
    """Where `ink` averaged over LINE_AVERAGE pixels along `axis` stands out of its own noise."""
    from scipy import ndimage

    averaged = ndimage.uniform_filter1d(ink, LINE_AVERAGE, axis=axis)
    sigma = _block_sigma(averaged)
    return averaged > level + NOISE_SIGMAS * sigma + max(MIN_CONTRAST - NOISE_SIGMAS * sigma, 0.03)


def _paper_noise(ink: np.ndarray) -> tuple[float, float]:
    """The paper's ink level (the median) and its noise (a robust sigma), from a grid of ~200x200 pixels."""
    step = max(1, min(ink.shape) // 200)
    sample = ink[::step, ::step]
    level = float(np.median(sample))
    return level, 1.4826 * float(np.median(np.abs(sample - level)))


def _block_sigma(ink: np.ndarray) -> float:
    """The page's noise: the median over blocks of GRAIN_BLOCK pixels of each block's robust sigma
    (pictures at least GRAIN_BLOCK pixels on each side; edge strips short of a block are left out)."""
    b = GRAIN_BLOCK // 2
    ink = ink[::2, ::2]  # every second pixel: the same sigma (the ink is smoothed), 4x faster
    rows, cols = max(1, ink.shape[0] // b), max(1, ink.shape[1] // b)
    blocks = ink[: rows * b, : cols * b].reshape(rows, b, cols, b).transpose(0, 2, 1, 3).reshape(rows * cols, -1)
    centre = np.median(blocks, axis=1, keepdims=True)
    return 1.4826 * float(np.median(np.median(np.abs(blocks - centre), axis=1)))


def _grain(ink: np.ndarray) -> np.ndarray:
    """The local grain of `ink` (H, W): the robust spread of its fine detail (ink minus a 1-pixel
    blur, where strokes are smooth and grain is not) in blocks of GRAIN_BLOCK pixels, each block
    taken as the median of it and its neighbours, spread back to every pixel."""
    from scipy import ndimage

    height, width = ink.shape
    b = GRAIN_BLOCK
    rows, cols = max(1, height // b), max(1, width // b)
    detail = np.abs(ink - ndimage.gaussian_filter(ink, sigma=1.0))[: rows * b, : cols * b]
    spread = np.median(detail.reshape(rows, b, cols, b).transpose(0, 2, 1, 3).reshape(rows, cols, -1), axis=2)
    spread = ndimage.median_filter(spread, size=3, mode="nearest")
    full = np.repeat(np.repeat(spread, b, axis=0), b, axis=1)
    return np.pad(full, ((0, height - full.shape[0]), (0, width - full.shape[1])), mode="edge")


def photo_ink(rgb: np.ndarray, name: str = "image") -> np.ndarray:
    """A photograph (H, W, 3) in [0, 1] -> ink in [0, 1]: paper, noise, ruled lines and specks out,
    what is kept stretched so that its darkest strokes (the PEAK_PERCENTILE) reach 1.

    Raises NoInkError when nothing digit-like is left (a blank or only ruled page, only noise).
    """
    from scipy import ndimage

    ink, edges = paper_and_ink(rgb)
    level, sigma = _paper_noise(ink)
    floor = level + NOISE_SIGMAS * sigma
    if min(ink.shape) >= SMALL_SIDE and sigma > 0.005:  # a photo's grain is finer than its strokes: average it out
        grain = _grain(ink)
        if edges:
            # A block that straddles a lighting edge can have the other side's grain (the page's
            # beside the table): each side's pixels get at least their own side's typical grain
            regions = sum((e.side > 0).astype(np.int32) << j for j, e in enumerate(edges))
            step = max(1, min(ink.shape) // 200)
            labels = np.arange(1 << len(edges))
            sample = regions[::step, ::step]
            typical = np.asarray(ndimage.median(grain[::step, ::step], sample, index=labels), dtype=grain.dtype)
            typical[np.bincount(sample.ravel(), minlength=len(labels)) == 0] = 0.0  # an area too thin to sample
            grain = np.maximum(grain, typical[regions])
        ink = ndimage.gaussian_filter(ink, sigma=1.0)
        level = _paper_noise(ink)[0]
        # The page's noise is the typical block's spread, not the whole page's: ruled or squared
        # lines, a dark table strip and a shadow widen the page's one spread (a floor that high
        # drops faint pencil, and lines under it are never found), a block's spread barely.
        sigma = _block_sigma(ink)
        # The grain is not the same everywhere: relative to the paper it is larger in a shadow or on
        # a dark table. Where it is larger than the page's typical grain, the floor rises with it.
        floor = level + NOISE_SIGMAS * sigma * np.maximum(grain / max(float(np.median(grain)), 1e-6), 1.0)
    threshold = max(MIN_CONTRAST - NOISE_SIGMAS * sigma, 0.03)  # faint pencil on clean paper still counts
    # Ruled lines are looked for above the page's one floor: a line must be seen across the whole
    # page, in a shadow too, where the local floor would break it into pieces.
    search = ink > level + NOISE_SIGMAS * sigma + threshold
    if min(ink.shape) >= SMALL_SIDE and sigma > 0.005:
        # ... and each direction's lines in the ink averaged along that direction: a thin faint
        # line (a grid's, photographed from afar) stands out of the grain there, a stroke's ink is
        # no stronger than it was
        search = tuple(search | _along(ink, axis, level) for axis in (1, 0))
    ink = np.clip(ink - floor, 0.0, 1.0)
    _bridge(ink, edges)
    mask = ink > threshold
    before = ink.copy(), mask.copy()
    # A frame under LINE_MIN_SIDE pixels (MNIST's 28x28, a tiny crop) holds a digit, not ruling.
    lines = remove_lines(ink, mask, search) if min(ink.shape) >= LINE_MIN_SIDE else 0
    if lines <= 2 and ink.sum() < 0.15 * before[0].sum():
        # One straight stroke that was most of the ink is the digit (a 1 filling a tight crop, or
        # MNIST's 28x28 frame), not ruling: a ruled or squared page has several lines. Keep it.
        ink, mask = before
    blobs, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        raise _no_ink(name)
    sizes = np.bincount(blobs.ravel())[1:]
    min_pixels = max(4, 5e-5 * mask.size)
    boxes = ndimage.find_objects(blobs)
    largest = np.array([max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes])
    digit_sized = largest >= max(4, 0.015 * max(ink.shape))
    thinnest = np.array([min(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes])
    dash = (thinnest <= 4) & (largest >= 5 * thinnest) & (sizes <= 1.5 * largest)  # a ruled line's leftover
    keep = (sizes >= min_pixels) & ~dash
    if not keep.any():
        raise _no_ink(name)
    if min(ink.shape) >= SMALL_SIDE:
        # A page's edge, a shadow's corner or the table: blobs on the image's border are not the
        # digit when a digit-sized one off the border is there too (a tight crop keeps its digit).
        # A page's edge against the table comes through in pieces (the table's grain raises the
        # floor there): thin pieces in one column (or row) that together span LINE_PIECES of the
        # picture are that edge, not the digit, which they outweighed in a small digit's photo
        # (read as a "1"). A digit's own strokes in pieces (a tall 1 cut by grid lines, a row of
        # 5s' bars) lie beside a digit-sized blob, the edge's beside the table's blob on the border.
        touching = np.array([b[0].start == 0 or b[1].start == 0 or b[0].stop == ink.shape[0]
                             or b[1].stop == ink.shape[1] for b in boxes])
        touching |= _broken_lines(boxes, keep, ink.shape, digits=keep & digit_sized & ~touching,
                                  rim=touching & (sizes >= min_pixels))
        inner = keep & ~touching
        if (inner & digit_sized).any():
            keep = inner
    kept = np.isin(blobs, 1 + np.flatnonzero(keep))
    if not (keep & digit_sized).any():
        raise _no_ink(name)
    kept = ndimage.maximum_filter(kept.view(np.uint8), size=5)  # widened by 2 px to the strokes' faint edges
    ink = np.where(kept > 0, ink, 0.0).astype("float32")
    # Its darkest strokes to 1: faint pencil left just above the paper's noise floor is the
    # digit as much as a black pen's is (`clean` and `digit_box` then see it above MIN_CONTRAST)
    peak = float(np.percentile(ink[mask & (kept > 0)], PEAK_PERCENTILE)) if (mask & (kept > 0)).any() else 1.0
    return np.clip(ink / peak, 0.0, 1.0) if 0.0 < peak < 1.0 else ink


def _line_candidates(mask: np.ndarray) -> list[tuple[float, float]]:
    """Near-horizontal straight structures spanning LINE_SPAN of the width: (slope, intercept) pairs,
    found with a Hough transform on a copy at most ~400 pixels wide (block maxima keep thin lines)."""
    from skimage.transform import hough_line

    f = max(1, math.ceil(mask.shape[1] / 400))
    h, w = mask.shape[0] // f, mask.shape[1] // f
    if h < 2 or w < 8:
        return []
    small = mask[: h * f, : w * f].reshape(h, f, w, f).max(axis=(1, 3))
    steps = max(9, int(2 * math.radians(LINE_TILT) * w))  # one step: the line drifts <= 1 pixel across
    theta = np.linspace(math.pi / 2 - math.radians(LINE_TILT), math.pi / 2 + math.radians(LINE_TILT), steps)
    votes, angles, dists = hough_line(small, theta=theta)
    best = votes.max(axis=1)
    peaks = [i for i in np.flatnonzero(best >= LINE_SPAN * w) if best[i] >= best[max(0, i - 2): i + 3].max()]
    turn = [int(votes[i].argmax()) for i in peaks]
    if len(peaks) >= 3:
        # Ruled or squared paper: its lines run parallel. Along their common angle, lines that come
        # through in pieces (in a shadow, in the grain of a photo taken from afar) count from a
        # shorter span; each is still checked as a line (`_line_band`).
        common = int(np.median(turn))
        parallel = votes[:, max(0, common - 1): common + 2].max(axis=1)
        more = [i for i in np.flatnonzero(parallel >= LINE_GRID_SPAN * w)
                if parallel[i] >= parallel[max(0, i - 2): i + 3].max() and i not in peaks]
        peaks += more
        turn += [max(0, common - 1) + int(votes[i, max(0, common - 1): common + 2].argmax()) for i in more]
    lines = []
    for i, k in zip(peaks, turn):
        angle = angles[k]
        slope = -math.cos(angle) / math.sin(angle)
        intercept = (dists[i] / math.sin(angle)) * f + (f - 1) / 2 * (1 - slope)
        lines.append((slope, intercept))
    return lines


def _line_band(mask: np.ndarray, ink: np.ndarray, slope: float, intercept: float):
    """The rows (offsets x columns) a thin near-horizontal line covers, the line's own ink there
    (each row's median over the columns where only the line is), and whether it runs from one edge
    of the picture to the other; None when it is no thin line with paper on both sides (a stroke,
    a dark area's edge) or a stroke runs beside it along much of it."""
    height, width = mask.shape
    reach = 6 + int(math.ceil(width / 400))
    offsets = np.arange(-reach, reach + 1)
    cols = np.arange(width)
    rows = np.rint(intercept + slope * cols)[None, :] + offsets[:, None]  # (offsets, columns)
    inside = (rows >= 0) & (rows < height)
    hits = mask[np.clip(rows, 0, height - 1).astype(int), cols[None, :]] & inside
    # The line's profile from the columns where only the line is: a stroke that crosses it (ink at
    # the window's top or bottom too) would widen the profile into the stroke.
    clean = ~(hits[:2].any(axis=0) | hits[-2:].any(axis=0))
    if clean.mean() < 0.3:
        return None
    profile = hits[:, clean].mean(axis=1)
    peak = int(profile.argmax())
    if profile[peak] < 0.5:  # not a line across this page after all
        return None
    if (hits[max(0, peak - 1): peak + 2, clean].any(axis=0)).sum() < LINE_ALONE * width:
        # A ruled line runs alone across most of the page; a digit's stem (a 9's, a 4's) has its
        # loop or bar beside it along much of its length
        return None
    lo = hi = peak
    while lo > 0 and profile[lo - 1] >= 0.3 * profile[peak]:
        lo -= 1
    while hi < len(offsets) - 1 and profile[hi + 1] >= 0.3 * profile[peak]:
        hi += 1
    if lo < 3 or hi > len(offsets) - 4 or hi - lo + 1 > max(3, 0.03 * min(height, width)):
        return None
    band = rows[lo - 2: hi + 3]  # the band 2 px wider: no dashes left
    values = ink[np.clip(band, 0, height - 1).astype(int), cols[None, :]]
    level = np.median(values[:, clean], axis=1)[:, None]
    # The line's own ink along it, piece by piece (a shadow, a gradient or a higher noise floor
    # over part of the page change it), each piece's from its columns where only the line is
    piece = LINE_PIECE
    if width >= 2 * piece:
        count = width // piece
        shape = (values.shape[0], count, -1)
        tail = values[:, : count * piece].reshape(shape)
        seen = np.broadcast_to(clean[: count * piece].reshape(1, count, -1), tail.shape)
        # each piece's (lower) median over its clean columns (sorted with the others after them); a piece
        # where strokes cross the line all along it gets the whole line's level
        ordered = np.sort(np.where(seen, tail, np.inf), axis=2)
        known = seen[0].sum(axis=1)
        middle = np.take_along_axis(ordered, np.maximum(known - 1, 0)[None, :, None] // 2, axis=2)[..., 0]
        local = np.where(known[None, :] > 0, middle, level)
        level = np.repeat(local, piece, axis=1)
        level = np.concatenate([level, np.repeat(level[:, -1:], width - level.shape[1], axis=1)], axis=1)
    level = np.maximum(level, np.maximum(np.r_[level[1:], level[-1:] * 0], np.r_[level[:1] * 0, level[:-1]]))  # +-1 row: the line's drift
    seen = np.flatnonzero(hits[lo: hi + 1].any(axis=0))
    margin = 2 + 0.03 * width
    across = bool(seen[0] <= margin and seen[-1] >= width - 1 - margin)  # from one edge of the picture to the other
    return band, np.broadcast_to(level, band.shape), across


def remove_lines(ink: np.ndarray, mask: np.ndarray,
                 search: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None) -> int:
    """Remove ruled, squared-grid and margin lines from `ink` and `mask` in place: thin straight
    structures running across LINE_SPAN of the page, horizontal or vertical within LINE_TILT degrees,
    looked for in `search` (default: `mask`; or a pair: where to look for horizontal lines, where
    for vertical ones). A line's pixels stay where they are clearly darker than the line (a stroke
    on it), and a stroke crossing a line is bridged across it. Returns how many lines were removed."""
    search = mask if search is None else search
    across, down = search if isinstance(search, tuple) else (search, search)
    found, lines = [], np.zeros_like(mask)
    for horizontal, a, m, l in ((True, ink, across, lines), (False, ink.T, down.T, lines.T)):
        for slope, intercept in _line_candidates(m):
            # one line, found twice (neighbouring Hough cells): the band already covers it
            along = np.clip(np.rint(intercept + slope * np.arange(m.shape[1])), 0, m.shape[0] - 1).astype(int)
            if l[along, np.arange(m.shape[1])].mean() > 0.5:
                continue
            band = _line_band(m, a, slope, intercept)
            if band is not None and not l[np.clip(band[0][len(band[0]) // 2], 0, m.shape[0] - 1).astype(int),
                                          np.arange(m.shape[1])].mean() > 0.5:
                rows = band[0]
                ok = (rows >= 0) & (rows < m.shape[0])
                l[rows[ok].astype(int), np.broadcast_to(np.arange(m.shape[1]), rows.shape)[ok]] = True
                found.append((horizontal, band))
    if len(found) == 1 and not found[0][1][2]:
        return 0  # one straight stroke that stops short of the picture's edges is a digit's (a 9's stem)
    if not found:
        return 0
    for horizontal, (rows, level, _) in found:
        a, m = (ink, mask) if horizontal else (ink.T, mask.T)
        height, width = m.shape
        cols = np.broadcast_to(np.arange(width), rows.shape)
        inside = (rows >= 0) & (rows < height)
        r, c = rows[inside].astype(int), cols[inside]
        # The line's own ink is taken away: a stroke on it (crossing it, running along it as a
        # 7's bar or a 1's stem does) keeps what it adds to the line; the line alone goes to 0.
        left = np.maximum(a[r, c] - level[inside] - LINE_MARGIN, 0.0)
        a[r, c] = left
        m[r, c] &= left > 0.03
    for horizontal, (rows, _, _) in found:
        # A stroke as dark as the line it crosses (pencil on a grid) lost its ink there: it is
        # bridged across the band, as much as it has just beyond it on both sides (after every
        # line is gone, so the crossing lines of a grid bridge nothing)
        a, m = (ink, mask) if horizontal else (ink.T, mask.T)
        height, width = m.shape
        cols = np.arange(width)
        above = np.clip(rows[0] - 2, 0, height - 1).astype(int)
        below = np.clip(rows[-1] + 2, 0, height - 1).astype(int)
        # ... where the ink on both sides is a stroke wider than a line (another line crossing
        # this one, not found as a line, is not joined up through it)
        wide = [np.convolve(m[side, cols], np.ones(2 * BRIDGE_WIDE - 1), mode="same") >= BRIDGE_WIDE + 1
                for side in (above, below)]
        both = np.minimum(a[above, cols], a[below, cols]) * (m[above, cols] & m[below, cols] & wide[0] & wide[1])
        inside = (rows >= 0) & (rows < height)
        r, c = rows[inside].astype(int), np.broadcast_to(cols, rows.shape)[inside]
        a[r, c] = np.maximum(a[r, c], both[c])
        m[r, c] |= both[c] > 0
    return len(found)


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
        raise _no_ink(name)
    peak = float(np.percentile(strokes, PEAK_PERCENTILE))
    return np.clip((ink - floor) / max(peak - floor, 1e-6), 0.0, 1.0).astype("float32")


def _gap(a: tuple[slice, slice], b: tuple[slice, slice]) -> int:
    """Chessboard distance in pixels between two boxes (0 when they overlap)."""
    dy = max(a[0].start - b[0].stop, b[0].start - a[0].stop, 0)
    dx = max(a[1].start - b[1].stop, b[1].start - a[1].stop, 0)
    return max(dy, dx)


def _broken_lines(boxes: list, candidates: np.ndarray, shape: tuple[int, int], digits: np.ndarray | None = None,
                  rim: np.ndarray | None = None) -> np.ndarray:
    """Which blobs (by their boxes, among `candidates`) are pieces of one straight line: at least
    three thin pieces (three times longer than wide, and at most LINE_THIN of the picture wide: a
    digit's stroke across as much of the picture is wider) whose across-extents overlap, one
    chain no wider across than two such pieces may be, covering LINE_PIECES of the picture along
    it, and no piece near (within LINE_THIN of the picture) a blob of `digits` outside the chain
    (a 1's stem cut by grid lines has its flag beside it, a row of 5s' bars their bodies below)
    unless one is near a blob of `rim` too (the table's strip on the border beside its edge)."""
    found = np.zeros(len(boxes), dtype=bool)
    for along, across in ((0, 1), (1, 0)):  # vertical pieces (a page's side edge), then horizontal
        pieces = sorted((boxes[i][across].start, boxes[i][across].stop, i) for i in np.flatnonzero(candidates)
                        if boxes[i][along].stop - boxes[i][along].start
                        >= 3 * (boxes[i][across].stop - boxes[i][across].start)
                        and boxes[i][across].stop - boxes[i][across].start <= LINE_THIN * shape[across])
        chains: list[list[int]] = []
        first = stop = -1
        spread = 2 * LINE_THIN * shape[across]
        for start, end, i in pieces:  # chains of pieces whose across-ranges overlap (no drifting sideways)
            if chains and start < stop and max(stop, end) - first <= spread:
                chains[-1].append(i)
                stop = max(stop, end)
            else:
                chains.append([i])
                first, stop = start, end
        near = LINE_THIN * max(shape)
        for chain in chains:
            if len(chain) < 3:
                continue
            by_rim = rim is not None and any(_gap(boxes[i], boxes[j]) <= near for i in chain for j in np.flatnonzero(rim))
            if not by_rim and digits is not None and any(_gap(boxes[i], boxes[j]) <= near for i in chain
                                                         for j in np.flatnonzero(digits) if j not in chain):
                continue
            spans = sorted((boxes[i][along].start, boxes[i][along].stop) for i in chain)
            covered, reach = 0, -1
            for a, b in spans:  # the length of the union of the pieces' extents along the line
                covered += max(0, b - max(a, reach))
                reach = max(reach, b)
            if covered >= LINE_PIECES * shape[along]:
                found[chain] = True
    return found


def digit_box(ink: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of the digit: the blob with the most ink above MIN_CONTRAST (passing over a
    long thin mark across the picture far from a substantial blob) and the blobs near it (within
    NEAR times its size) that are not specks (under SPECK of its ink: dust, paper grain, JPEG
    noise), widened to the faint anti-aliased edge pixels that touch them."""
    from scipy import ndimage

    mask = ink > MIN_CONTRAST
    blobs, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count > 1:
        mass = ndimage.sum(ink, blobs, index=np.arange(1, count + 1))
        boxes = ndimage.find_objects(blobs)
        # A long thin mark across much of the picture (a page's edge, a line's leftover, in pieces
        # that the stretch joined) is no digit when a blob far from it (not a 1's flag or dot), with
        # 40% of its ink and a third of its length or less, is there too.
        sides = np.array([(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes])
        long_side = sides.max(axis=1)
        line = (long_side >= 6 * sides.min(axis=1)) & (np.max(sides / np.array(ink.shape), axis=1) >= LINE_PIECES)
        if line.any() and not line.all():
            other = int(np.where(line, -1.0, mass).argmax())
            far = np.array([_gap(b, boxes[other]) > NEAR * long_side[other] for b in boxes])
            passed = line & far & (mass[other] >= 0.4 * mass) & (long_side >= 3 * long_side[other])
            mass = np.where(passed, 0.0, mass)
        main = int(mass.argmax())
        reach = NEAR * max(boxes[main][0].stop - boxes[main][0].start, boxes[main][1].stop - boxes[main][1].start)
        keep = [i for i in range(count) if mass[i] >= SPECK * mass[main] and _gap(boxes[i], boxes[main]) <= reach]
        mask = np.isin(blobs, 1 + np.array(keep))
    mask = (ndimage.maximum_filter(mask.view(np.uint8), size=5) > 0) & (ink > 0)  # 2 pixels wider
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


# ---- whole numbers ---------------------------------------------------------------------------

def _split_wide(ink: np.ndarray, cols: slice, limit: float) -> list[slice]:
    """A column range wider than `limit` pixels -> ranges cut at the thinnest column (the least ink)
    in its middle half, recursively, where that column is a neck between two digits: under NECK of
    the range's median inked column. A wide single digit (a squat 5, whose middle columns cross its
    bar and its bowl) has no such neck and stays whole."""
    width = cols.stop - cols.start
    if width <= limit or width < 8:
        return [cols]
    profile = ink[:, cols].sum(axis=0)
    lo, hi = width // 4, width - width // 4
    at = lo + int(profile[lo:hi].argmin())
    inked = profile[profile > 0]
    if inked.size == 0 or profile[at] >= NECK * float(np.median(inked)):
        return [cols]
    cut = cols.start + at
    return _split_wide(ink, slice(cols.start, cut), limit) + _split_wide(ink, slice(cut, cols.stop), limit)


def split_digits(ink: np.ndarray, name: str = "image") -> list[tuple[slice, slice, np.ndarray]]:
    """Ink with a number written left to right -> its digits, left to right, as (rows, cols, ink)
    with the digit's own strokes only (a neighbour's overhang in its box left out).

    Blobs (not specks) whose columns overlap by a third of the narrower one are one digit (a 5's
    detached bar, a 4 in two strokes); blobs far above or below the number's line are dropped; a
    piece under half the number's height, or a light and short one (a stray dot or tick: under LIGHT
    of the median group's ink and SHORT of the height), joins its nearest neighbour; a group wider
    than WIDE times the number's height is cut where it has a neck (_split_wide).
    """
    from scipy import ndimage

    ink = clean(np.asarray(ink, dtype="float32"), name)
    blobs, count = ndimage.label(ink > MIN_CONTRAST, structure=np.ones((3, 3)))
    if count == 0:
        raise _no_ink(name)
    mass = ndimage.sum(ink, blobs, index=np.arange(1, count + 1))
    boxes = ndimage.find_objects(blobs)
    main = int(mass.argmax())
    top, bottom = boxes[main][0].start, boxes[main][0].stop
    line = (bottom - top)
    ids = [i for i in range(count) if mass[i] >= SPECK * mass[main]
           and boxes[i][0].stop > top - 0.5 * line and boxes[i][0].start < bottom + 0.5 * line]
    ids.sort(key=lambda i: boxes[i][1].start)
    groups: list[list[int]] = []
    for i in ids:
        if groups:
            last = groups[-1]
            start = min(boxes[j][1].start for j in last)
            stop = max(boxes[j][1].stop for j in last)
            own = boxes[i][1]
            overlap = min(stop, own.stop) - max(start, own.start)
            if overlap >= min(stop - start, own.stop - own.start) / 3:
                last.append(i)
                continue
        groups.append([i])
    def extent(group, axis):
        return min(boxes[j][axis].start for j in group), max(boxes[j][axis].stop for j in group)

    height = max(np.subtract(*extent(g, 0)[::-1]) for g in groups)

    def join_neighbour(k: int) -> None:  # group k joins the neighbour it is closest to, horizontally
        start, stop = extent(groups[k], 1)
        gaps = [start - extent(groups[k - 1], 1)[1] if k > 0 else np.inf,
                extent(groups[k + 1], 1)[0] - stop if k + 1 < len(groups) else np.inf]
        piece = groups.pop(k)
        groups[k - 1 if gaps[0] <= gaps[1] else k] += piece

    def tall(group, share: float) -> bool:
        top_, bottom_ = extent(group, 0)
        return bottom_ - top_ >= share * height

    # A piece under half the number's height is part of a digit (a 5's bar, a broken stroke) ...
    k = 0
    while k < len(groups) and len(groups) > 1:
        if tall(groups[k], 0.5):
            k += 1
        else:
            join_neighbour(k)
            k = max(k - 1, 0)  # look again at the group it joined (or the one now at k)
    # ... and so is a light, short mark beside a digit (a stray dot or tick: some MNIST digits carry
    # one): under LIGHT of the median group's ink, SHORT of the number's height.
    light = LIGHT * float(np.median([mass[g].sum() for g in groups]))
    k = 0
    while k < len(groups) and len(groups) > 1:
        if tall(groups[k], SHORT) or mass[groups[k]].sum() >= light:
            k += 1
        else:
            join_neighbour(k)
            k = max(k - 1, 0)
    if len(groups) > MAX_DIGITS:
        raise UsageError(f"{name}: {len(groups)} digit-sized marks found, more than {MAX_DIGITS} digits; "
                         "send a picture of one number written on one line")
    widths = [np.subtract(*extent(g, 1)[::-1]) for g in groups]
    typical = float(np.median(widths)) if len(groups) > 2 else 0.75 * height
    digits = []
    for group in groups:
        own = np.isin(blobs, 1 + np.array(group))
        rows = slice(min(boxes[j][0].start for j in group), max(boxes[j][0].stop for j in group))
        cols = slice(min(boxes[j][1].start for j in group), max(boxes[j][1].stop for j in group))
        strokes = np.where(ndimage.binary_dilation(own, iterations=2), ink, 0.0)
        for piece in _split_wide(strokes[rows], cols, max(WIDE * height, 1.8 * typical)):
            part = strokes[rows, piece]
            filled = np.flatnonzero(part.max(axis=1) > MIN_CONTRAST)
            if filled.size == 0:
                continue
            r = slice(rows.start + filled[0], rows.start + filled[-1] + 1)
            digits.append((r, piece, strokes[r, piece]))
    if len(digits) > MAX_DIGITS:
        raise UsageError(f"{name}: {len(digits)} digit-sized marks found, more than {MAX_DIGITS}; "
                         "send a picture of one number written on one line")
    return digits


def load_digits(source, name: str | None = None) -> tuple[np.ndarray, list[list[int]]]:
    """An image file or its bytes with a number -> its digits normalised (N, 28, 28), left to right,
    and each digit's box [top, left, bottom, right] in the original image's pixels."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "image")
    page = decode_page(source, name)
    images, boxes = [], []
    for rows, cols, part in split_digits(page.ink, name):
        images.append(normalize(np.pad(part, 2), name))
        boxes.append([round(v * page.scale) for v in (rows.start, cols.start, rows.stop, cols.stop)])
    return np.stack(images), boxes


def load_raw(source, name: str | None = None) -> np.ndarray:
    """A 28x28 image as it is (only the polarity fixed): the behaviour of `kerasdl.predict --raw`."""
    name = name or (str(source) if isinstance(source, (str, Path)) else "image")
    pixels, _ = _read(source, name)
    if pixels.ndim == 3:
        gray = pixels.mean(axis=2)
        pixels = 1.0 - gray if np.median(_border(gray)) > 0.5 else gray
    if pixels.shape != (SIZE, SIZE):
        raise UsageError(f"{name}: image is {pixels.shape[1]}x{pixels.shape[0]}, --raw takes 28x28 only; "
                         "drop --raw to normalise it the MNIST way")
    return pixels.astype("float32")


def squeeze(source, name: str | None = None) -> np.ndarray:
    """The whole frame scaled to 28x28 with no cropping or centring: the old `--resize`, kept as a baseline."""
    ink = decode(source, name or "image")
    return _resize(ink, SIZE, SIZE)
