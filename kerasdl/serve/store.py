"""The model store: every export under the models directory, loaded as servables."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from kerasdl.errors import UsageError
from kerasdl.serve.batching import warm_up
from kerasdl.serve.protocol import NAME, ApiError

log = logging.getLogger("kerasdl.serve")


@dataclass
class Servable:
    """One loaded model version and its signatures."""

    name: str
    version: int
    path: Path
    loaded: object
    signatures: dict = field(default_factory=dict)

    def signature(self, name: str | None):
        key = name or "serving_default"
        if key not in self.signatures:
            raise ApiError(404, f"Serving signature name: \"{key}\" not found in signature def "
                                f"(model {self.name} has: {', '.join(sorted(self.signatures))})")
        return self.signatures[key]


def load_models(models_dir, warm: bool = True) -> dict[str, Servable]:
    """Every model directory under `models_dir` with a SavedModel version, its newest version loaded
    (and, with `warm`, run once at every batch size, so that no request pays for a first call)."""
    import tensorflow as tf

    from kerasdl import artifacts

    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise UsageError(f"--models {models_dir}: no such directory; train a model first "
                         "(python -m kerasdl.mnist cnn) or pass the directory that holds your exports")
    servables = {}
    for child in sorted(models_dir.iterdir()):
        if not child.is_dir() or not NAME.match(child.name):
            continue
        try:
            path = artifacts.resolve(child)
        except UsageError:
            continue  # not an export (e.g. a stray folder)
        version = int(path.name) if path.name.isdigit() else 1
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # a corrupt export must not stop the others from being served
            log.warning("skipping %s: the SavedModel could not be loaded (%s)", path, exc.__class__.__name__)
            continue
        servables[child.name] = Servable(child.name, version, path, loaded, dict(loaded.signatures))
        if warm:
            warm_up(servables[child.name])
    return servables


