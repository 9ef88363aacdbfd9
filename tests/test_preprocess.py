"""kerasdl.preprocess: MNIST's normalisation (20x20 box, centre of mass, polarity, alpha, no ink)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from kerasdl import preprocess
from kerasdl.errors import UsageError


def encode(pixels: np.ndarray, mode: str = "L", fmt: str = "PNG", **save) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def bar(height=300, width=300, top=40, left=200, h=120, w=30) -> np.ndarray:
    """A white (255) upright bar on black, far from the centre of the frame."""
    x = np.zeros((height, width), dtype="uint8")
    x[top: top + h, left: left + w] = 255
    return x


def box(x: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(x > 0.05)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_digit_is_scaled_into_20x20_keeping_its_aspect_and_centred_by_mass():
    out = preprocess.load(encode(bar()))
    assert out.shape == (28, 28) and out.dtype == np.float32
    h, w = box(out)
    assert h == 20 and 4 <= w <= 6  # 120x30 -> 20x5
    com = preprocess.centre_of_mass(out)
    assert abs(com[0] - 14) <= 0.5 and abs(com[1] - 14) <= 0.5


def test_off_centre_mass_is_centred_not_the_box():
    """An L shape: its centre of mass is not the centre of its box; MNIST centres the mass."""
    x = np.zeros((200, 200), dtype="uint8")
    x[20:180, 20:40] = 255  # long vertical stroke
    x[160:180, 20:180] = 255  # foot
    out = preprocess.load(encode(x))
    rows, cols = np.nonzero(out > 0.05)
    box_centre = ((rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2)
    com = preprocess.centre_of_mass(out)
    # The 20-wide box can move at most 4 pixels off-centre in the 28-wide frame; here that is
    # (nearly) enough: the mass ends within 0.6 pixels of the centre.
    assert abs(com[0] - 14) <= 0.6 and abs(com[1] - 14) <= 0.6
    assert abs(box_centre[1] - 14) > 1  # the box was moved off-centre to centre the mass


def test_polarity_dark_on_light_equals_light_on_dark():
    light_on_dark = preprocess.load(encode(bar()))
    dark_on_light = preprocess.load(encode(255 - bar()))
    np.testing.assert_allclose(dark_on_light, light_on_dark, atol=1e-5)


def test_transparency_is_the_ink_as_on_a_canvas():
    """Black strokes on a transparent canvas (RGBA): alpha is the ink, whatever the colour says."""
    alpha = bar()
    rgba = np.zeros((*alpha.shape, 4), dtype="uint8")
    rgba[..., 3] = alpha  # colour 0 (black) everywhere, opaque only where drawn
    out = preprocess.load(encode(rgba, mode="RGBA"))
    np.testing.assert_allclose(out, preprocess.load(encode(bar())), atol=1e-5)


def test_colour_photo_with_paper_texture_jpeg_noise_and_a_speck():
    rng = np.random.default_rng(0)
    clean = preprocess.load(encode(255 - bar()))
    paper = 235 - bar() * 0.8 + rng.normal(0, 6, (300, 300))
    paper[5:8, 5:8] = 120  # a speck of dust in the corner must not stretch the box
    rgb = np.stack([paper, paper * 0.97, paper * 0.9], axis=-1).clip(0, 255).astype("uint8")
    out = preprocess.load(encode(rgb, mode="RGB", fmt="JPEG", quality=70))
    assert box(out)[0] == 20
    assert np.abs(out - clean).mean() < 0.03


def test_mnist_test_images_come_out_nearly_unchanged(real_mnist):
    x = np.load(real_mnist)["x_test"][:1000].astype("float32") / 255.0
    out = np.stack([preprocess.normalize(im) for im in x])
    worst = np.abs(out - x).max(axis=(1, 2))
    assert np.mean(worst <= 0.02) >= 0.99  # 99% of them within 2% of full scale at every pixel
    assert np.abs(out - x).mean() < 0.002


@pytest.mark.parametrize("pixels", [
    np.full((64, 64), 255, "uint8"),  # blank paper
    np.full((64, 64), 128, "uint8"),  # uniform grey
    np.random.default_rng(0).normal(230, 4, (64, 64)).clip(0, 255).astype("uint8"),  # paper texture only
], ids=["white", "grey", "texture"])
def test_no_ink_is_an_error_not_a_guess(pixels):
    with pytest.raises(preprocess.NoInkError, match="no ink found"):
        preprocess.load(encode(pixels), "blank.png")


def test_unreadable_and_oversized_images_are_usage_errors():
    from PIL import Image

    with pytest.raises(UsageError, match="not a readable image"):
        preprocess.load(b"GIF89a but not really", "fake.gif")
    buffer = io.BytesIO()
    Image.new("1", (6000, 5000)).save(buffer, format="PNG")  # 30 megapixels, a few kB: a decompression bomb
    with pytest.raises(UsageError, match="over 25 megapixels"):
        preprocess.load(buffer.getvalue(), "bomb.png")


def test_raw_takes_28x28_only_and_squeeze_keeps_the_whole_frame():
    with pytest.raises(UsageError, match="--raw takes 28x28 only"):
        preprocess.load_raw(encode(bar()))
    raw = preprocess.load_raw(encode(255 - bar(28, 28, 4, 10, 20, 5)))  # inverted, nothing else
    assert raw.max() == pytest.approx(1.0) and raw[0, 0] == 0
    squeezed = preprocess.squeeze(encode(bar()))
    assert squeezed.shape == (28, 28) and box(squeezed)[0] < 20  # not scaled into the 20x20 box
