"""The drawing page's backend: an uploaded image read by every classifier, and section 2.6's latent planes."""

from __future__ import annotations

import io
import time

import numpy as np

from kerasdl.errors import UsageError
from kerasdl.serve.protocol import ApiError, _input_specs, run_signature

LATENT_POINTS = 2000  # test digits shown on the page's latent planes
CLASSIFIERS = ("linear", "mlp", "cnn")
EXPORT_COMMANDS = {
    "linear": "python -m kerasdl.mnist linear",
    "mlp": "python -m kerasdl.mnist mlp",
    "cnn": "python -m kerasdl.mnist cnn",
    "encoder": "python -m kerasdl.autoencoder",
    "decoder": "python -m kerasdl.autoencoder",
}


FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")  # the only image formats an upload is opened as
MAX_PIXELS = 25_000_000  # larger uploads are refused from their header, before decoding
MAX_SIDE = 1024  # uploads are read at most this wide and high (JPEG decodes at reduced size)


def reduce_upload(image: bytes, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> bytes:
    """An upload made safe to normalise: only PNG/JPEG/BMP/GIF/WebP, at most `max_pixels` as
    stored, and at most `max_side` on a side as handed to kerasdl.preprocess (JPEGs are decoded
    at 1/2, 1/4 or 1/8 size by libjpeg's draft mode, others shrunk after decoding), so a request's
    float copies stay near max_side**2 pixels whatever was sent. Small images pass unchanged."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(image), formats=FORMATS) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise ApiError(400, f"image is {width}x{height}, over {max_pixels / 1e6:g} megapixels; "
                                    "send a smaller picture of the digit")
            if max(width, height) <= max_side:
                return image
            if img.format == "JPEG":
                img.draft(img.mode if img.mode in ("L", "RGB") else "RGB", (max_side, max_side))
            img.seek(0)  # an animated GIF's first frame
            img.load()
            small = img.copy()
    except ApiError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(400, f"upload: not a readable image ({exc.__class__.__name__}); "
                            "send a PNG, JPEG, BMP, GIF or WebP") from None
    small.thumbnail((max_side, max_side), Image.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def classifiers(servables: dict) -> dict:
    """Each loaded classifier as a function of (N, 28, 28) float32 digits -> (N, 10) probabilities,
    through its serving signature (whatever input shape the signature takes)."""
    def as_function(servable):
        fn = servable.signature(None)
        key, spec = next(iter(_input_specs(fn).items()))
        shape = spec.shape.as_list()[1:]
        return lambda x: next(iter(fn(**{key: x.reshape((len(x), *shape)).astype("float32")}).values())).numpy()

    return {name: as_function(servables[name]) for name in CLASSIFIERS if name in servables}


def image_width(image: bytes) -> int:
    """The width of an image, from its header (reduce_upload has checked that it opens)."""
    from PIL import Image

    with Image.open(io.BytesIO(image), formats=FORMATS) as img:
        return img.size[0]


def read_number(servables: dict, image: bytes, scale: float = 1.0) -> dict:
    """POST /v1/digits:read: a picture of a number, read digit by digit by every classifier
    (the work is `kerasdl.predict.read_number_by_every_model`, shared with the CLI). `scale`:
    the uploaded image's size over `image`'s (reduce_upload), so boxes are in the upload's pixels."""
    from kerasdl import predict

    try:
        answer = predict.read_number_by_every_model(image, classifiers(servables))
    except UsageError as exc:
        raise ApiError(400, str(exc)) from None
    for name, reading in answer["classifiers"].items():
        reading["version"] = str(servables[name].version)
        for digit in reading["digits"]:
            digit["box"] = [round(v * scale) for v in digit["box"]]
    answer["missing"] = {name: EXPORT_COMMANDS[name] for name in CLASSIFIERS if name not in servables}
    return answer


def classify(servables: dict, image: bytes) -> dict:
    """An uploaded image -> the normalised 28x28 digit and every classifier's ten probabilities."""
    from kerasdl import preprocess

    start = time.perf_counter()
    try:
        digit = preprocess.load(image, "upload")
    except UsageError as exc:
        raise ApiError(400, str(exc)) from None
    answers = {}
    for name, model in classifiers(servables).items():
        probs = model(digit[None])[0]
        answers[name] = {"version": str(servables[name].version), "digit": int(probs.argmax()),
                         "probabilities": [round(float(p), 5) for p in probs]}
    latent = {"encoder": None}
    if "encoder" in servables:
        fn = servables["encoder"].signature(None)
        key = next(iter(_input_specs(fn)))
        code = next(iter(fn(**{key: digit.reshape(1, 784)}).values())).numpy()[0]
        latent["encoder"] = [round(float(v), 4) for v in code]
    return {
        "image": np.round(digit, 4).tolist(),
        "classifiers": answers,
        "latent": latent,
        "missing": {name: EXPORT_COMMANDS[name] for name in CLASSIFIERS if name not in servables},
        "milliseconds": round((time.perf_counter() - start) * 1000, 1),
    }


def latent_plane(servables: dict, points: int = LATENT_POINTS, seed: int = 0) -> dict:
    """Section 2.6's planes for the page: `points` MNIST test digits' 2-D codes from the exported
    encoder and from PCA(2) (fit on 10,000 training images), with PCA's mean and components so
    the page can encode a drawing and decode any point of PCA's plane itself."""
    from sklearn.decomposition import PCA

    from kerasdl import data

    try:
        (x_train, _), (x_test, y_test) = data.load_mnist()
    except UsageError as exc:
        raise ApiError(503, f"the latent plane needs MNIST's test set: {exc}") from None
    pick = np.random.default_rng(seed).choice(len(x_test), size=min(points, len(x_test)), replace=False)
    x = x_test[pick].reshape(len(pick), 784).astype("float32") / 255.0
    pca = PCA(n_components=2, random_state=seed).fit(x_train[:10000].reshape(-1, 784).astype("float32") / 255.0)
    plane = {
        "labels": y_test[pick].astype(int).tolist(),
        "pca": {"codes": np.round(pca.transform(x), 3).tolist(), "mean": np.round(pca.mean_, 5).tolist(),
                "components": np.round(pca.components_, 6).tolist()},
        "autoencoder": None,
        "missing": {part: EXPORT_COMMANDS[part] for part in ("encoder", "decoder") if part not in servables},
    }
    if "encoder" in servables:
        fn = servables["encoder"].signature(None)
        key = next(iter(_input_specs(fn)))
        codes = np.concatenate([run_signature(fn, {key: x[i: i + 500]}).popitem()[1] for i in range(0, len(x), 500)])
        plane["autoencoder"] = {"codes": np.round(codes, 3).tolist(), "version": str(servables["encoder"].version)}
    return plane


