"""Each section's JSON summary: what the report reads and the last stdout line prints."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path


def config_json(cfg) -> dict:
    """A config dataclass as JSON-ready values (paths as strings, tuples as lists)."""
    return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
            for k, v in asdict(cfg).items()}


def write_text(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically (a temporary sibling, then one rename): a reader or a
    crash never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write(run_dir: Path, summary: dict) -> dict:
    """Write run_dir/summary.json atomically and return the summary."""
    write_text(Path(run_dir) / "summary.json", json.dumps(summary, indent=2))
    return summary
