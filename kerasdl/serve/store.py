"""The model store: the exports under the models directory, kept loaded as TF Serving keeps them.

`ModelStore.poll()` (every --poll-seconds, TF Serving's --file_system_poll_wait_seconds) looks
at every `<models>/<name>/<version>/`: a new version is loaded, warmed up from its
`assets.extra/tf_serving_warmup_requests` and only then switched to, by replacing one dict
(requests in flight finish on the version they started with). A version that fails to load
is reported in the model's status with its error and never replaces a working one. Versions
beyond the newest `keep_versions` are unloaded once a newer one is serving (TF Serving's
default "latest" policy keeps one).

With a TF Serving model config file (`--model_config_file`, its text format), only the models
it lists are served, from their `base_path`, with its version policy (`latest`, `all`,
`specific`) and `version_labels` (e.g. stable and canary), as TF Serving reads the same file.

While a version is loaded, a marker `<name>/.serving/<version>.<pid>` tells
`kerasdl.artifacts.prune` not to delete it from under the server.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasdl.errors import UsageError
from kerasdl.serve.batching import BATCH_SIZES
from kerasdl.serve.protocol import NAME, ApiError, ModelPath, _input_specs, metadata, one_line, run_signature, version_status

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
        if key not in self.signatures:  # TF Serving: InvalidArgument, 400
            raise ApiError(400, f"Serving signature name: \"{key}\" not found in signature def "
                                f"(model {self.name} has: {', '.join(sorted(self.signatures))})")
        return self.signatures[key]


@dataclass
class Model:
    """A model's loaded versions (a dict replaced whole on every change, never edited in place),
    the versions that failed to load, with their errors, and labels (stable, canary, ...)."""

    name: str
    servables: dict = field(default_factory=dict)  # version -> Servable
    failed: dict = field(default_factory=dict)  # version -> (error line, the directory's _stamp when it failed)
    labels: dict = field(default_factory=dict)  # label -> version

    def latest(self) -> Servable | None:
        servables = self.servables
        return servables[max(servables)] if servables else None


@dataclass(frozen=True)
class ModelConfig:
    """Where a model's versions are and which of them to serve (TF Serving's ModelConfig)."""

    name: str
    base_path: Path
    policy: tuple = ("latest", 1)  # ("latest", n), ("all",) or ("specific", frozenset of versions)
    labels: tuple = ()  # (label, version) pairs

    def wanted(self, on_disk: list[int]) -> list[int]:
        if self.policy[0] == "all":
            return list(on_disk)
        if self.policy[0] == "specific":
            return [v for v in on_disk if v in self.policy[1]]
        return on_disk[-self.policy[1]:]


def read_model_config(path) -> list[ModelConfig]:
    """TF Serving's --model_config_file (a ModelServerConfig in protobuf text format), or a one-line UsageError."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = Path(path)
    try:
        config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    except OSError as exc:
        raise UsageError(f"--model_config_file {path}: cannot read it ({exc.strerror})") from None
    except text_format.ParseError as exc:
        raise UsageError(f"--model_config_file {path}: not a TF Serving model config ({exc}); "
                         "see TF Serving's 'Model Server Configuration' guide") from None
    models = []
    for entry in config.model_config_list.config:
        if not NAME.match(entry.name):
            raise UsageError(f"--model_config_file {path}: model name {entry.name!r} is not a plain name")
        choice = entry.model_version_policy.WhichOneof("policy_choice")
        if choice == "all":
            policy = ("all",)
        elif choice == "specific":
            policy = ("specific", frozenset(entry.model_version_policy.specific.versions))
        else:
            policy = ("latest", entry.model_version_policy.latest.num_versions or 1)
        models.append(ModelConfig(entry.name, Path(entry.base_path or entry.name), policy,
                                  tuple(sorted(entry.version_labels.items()))))
    if not models:
        raise UsageError(f"--model_config_file {path}: lists no model (model_config_list {{ config {{ ... }} }})")
    return models


def _stamp(path: Path):
    """(files, newest mtime, bytes) of a version directory: a failed version is tried again once it
    changes (e.g. a copy that was still being written), as TF Serving retries loads."""
    files = newest = size = 0
    try:
        for folder, _, names in os.walk(path):
            for name in names:
                info = os.stat(os.path.join(folder, name))
                files, newest, size = files + 1, max(newest, info.st_mtime), size + info.st_size
    except OSError:
        return None
    return files, newest, size


def warm_up(servable: Servable) -> int:
    """Run the version's TF Serving warm-up requests, or zeros at every batch size when it has none;
    returns the number of calls made."""
    from kerasdl.serve import warmup

    requests = warmup.read(servable.path)
    if not requests:
        for key, fn in servable.signatures.items():
            specs = _input_specs(fn)
            if any(None in spec.shape.as_list()[1:] for spec in specs.values()):
                continue
            for size in BATCH_SIZES:
                requests.append((key, {k: np.zeros((size, *spec.shape.as_list()[1:]), spec.dtype.as_numpy_dtype)
                                       for k, spec in specs.items()}))
    for signature_name, inputs in requests:
        run_signature(servable.signature(signature_name), inputs)
    return len(requests)


def load_servable(name: str, path: Path, warm: bool = True) -> Servable:
    """Load and warm one version directory; raises with a one-line reason when it cannot be served."""
    import tensorflow as tf

    version = int(path.name) if path.name.isdigit() else 1
    loaded = tf.saved_model.load(str(path))
    signatures = dict(loaded.signatures)
    if "serving_default" not in signatures:
        raise ValueError("the SavedModel has no serving_default signature")
    servable = Servable(name, version, path, loaded, signatures)
    if warm:
        warm_up(servable)
    return servable


class ModelStore:
    """Every model under `root`, its newest `keep_versions` versions loaded."""

    def __init__(self, root, keep_versions: int = 1, warm: bool = True, mark: bool = True,
                 config: list[ModelConfig] | None = None):
        self.root = Path(root)
        self.config = config
        if config is None and not self.root.is_dir():
            raise UsageError(f"--models {self.root}: no such directory; train a model first "
                             "(python -m kerasdl.mnist cnn) or pass the directory that holds your exports")
        self.keep_versions = keep_versions
        self.warm = warm
        self.mark = mark
        self.models: dict[str, Model] = {}
        self.on_change = None  # called after every load or unload, for the metrics

    # -- reading (event loop) --

    def servables(self) -> dict[str, Servable]:
        """Each model's newest loaded version."""
        return {name: s for name, model in self.models.items() if (s := model.latest()) is not None}

    def find(self, path: ModelPath) -> Servable:
        """The servable a URL names, or TF Serving's 404."""
        model = self.models.get(path.name) if NAME.match(path.name) else None
        servables = model.servables if model else {}
        if path.label is not None:
            version = model.labels.get(path.label) if model else None
            if version is None or version not in servables:
                raise ApiError(404, f"Servable not found for request: Specific({path.name}, label {path.label})")
            return servables[version]
        if path.version is not None:
            if path.version not in servables:
                raise ApiError(404, f"Servable not found for request: Specific({path.name}, {path.version})")
            return servables[path.version]
        if not servables:
            raise ApiError(404, f"Servable not found for request: Latest({path.name})")
        return servables[max(servables)]

    def status(self, path: ModelPath) -> dict:
        """TF Serving's model_version_status: loaded versions AVAILABLE, failed ones END with their error."""
        model = self.models.get(path.name) if NAME.match(path.name) else None
        if model is None or (not model.servables and not model.failed):
            raise ApiError(404, f"Servable not found for request: Latest({path.name})")
        entries = {v: version_status(v) for v in model.servables}
        entries.update({v: version_status(v, "END", error) for v, (error, _) in model.failed.items()
                        if v not in model.servables})
        if path.version is not None or path.label is not None:
            version = self.find(path).version if path.label is not None else path.version
            if version not in entries:
                raise ApiError(404, f"Servable not found for request: Specific({path.name}, {version})")
            entries = {version: entries[version]}
        return {"model_version_status": [entries[v] for v in sorted(entries, reverse=True)]}

    def metadata(self, path: ModelPath) -> dict:
        return metadata(self.find(path))

    # -- polling (a worker thread) --

    def poll(self) -> list[str]:
        """Look at the models directory once: load what is new, unload what the policy drops.
        Returns one line per change (also logged)."""
        from kerasdl import artifacts

        changes = []
        if self.config is not None:
            configs = self.config
        else:
            configs = [ModelConfig(child.name, child, ("latest", self.keep_versions))
                       for child in (sorted(self.root.iterdir()) if self.root.is_dir() else [])
                       if child.is_dir() and NAME.match(child.name)]
        models = dict(self.models)  # readers on the event loop iterate self.models: replaced, never edited
        for config in configs:
            child = config.base_path
            if (child / "saved_model.pb").is_file():
                on_disk = [1]  # an unversioned export: served as version 1
            else:
                on_disk = artifacts.versions(child)
            if not on_disk:
                continue
            model = models.setdefault(config.name, Model(config.name))
            model.labels = dict(config.labels)
            changes += self._update(model, child, on_disk, config.wanted(on_disk))
        self.models = models
        if changes and self.on_change is not None:
            self.on_change()
        return changes

    def _update(self, model: Model, model_dir: Path, on_disk: list[int], wanted: list[int]) -> list[str]:
        changes = []
        for version in wanted:
            path = model_dir if on_disk == [1] and (model_dir / "saved_model.pb").is_file() else model_dir / str(version)
            stamp = _stamp(path)
            if stamp is None:
                continue
            if version in model.servables or model.failed.get(version, (None, None))[1] == stamp:
                continue
            start = time.perf_counter()
            try:
                servable = load_servable(model.name, path, self.warm)
            except Exception as exc:  # a broken export must never stop the others, nor replace a working one
                error = one_line(exc)
                model.failed = {**model.failed, version: (error, stamp)}
                changes.append(f"{model.name} version {version} failed to load: {error}")
                log.warning("%s", changes[-1])
                continue
            model.failed = {v: f for v, f in model.failed.items() if v != version}
            model.servables = {**model.servables, version: servable}  # the switch: one assignment
            self._mark(model_dir, version, True)
            changes.append(f"{model.name} version {version} loaded and warmed up in "
                           f"{time.perf_counter() - start:.1f} s")
            log.info("%s", changes[-1])
        keep = {v for v in model.servables if v in wanted}
        if not keep and model.servables:  # nothing newer works: the version serving now goes on serving
            keep = {max(model.servables)}
        dropped = sorted(set(model.servables) - keep)
        if dropped:
            model.servables = {v: s for v, s in model.servables.items() if v in keep}
            for version in dropped:
                self._mark(model_dir, version, False)
                changes.append(f"{model.name} version {version} unloaded")
                log.info("%s", changes[-1])
        return changes

    def _mark(self, model_dir: Path, version: int, serving: bool) -> None:
        """Create or remove the marker that keeps artifacts.prune off a version being served."""
        if not self.mark:
            return
        from kerasdl import artifacts

        marker = model_dir / artifacts.SERVING_DIR / f"{version}.{os.getpid()}"
        try:
            if serving:
                marker.parent.mkdir(exist_ok=True)
                marker.touch()
            else:
                marker.unlink(missing_ok=True)
        except OSError as exc:  # a read-only models directory: served all the same, just not protected
            log.debug("cannot mark %s as served: %s", marker, exc)

    def close(self) -> None:
        """Remove this process's markers (at shutdown)."""
        paths = {c.name: c.base_path for c in self.config or []}
        for model in self.models.values():
            for version in model.servables:
                self._mark(paths.get(model.name, self.root / model.name), version, False)
