"""Each section's JSON summary: what the report reads and the last stdout line prints."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from kerasdl.atomic import write_text


def config_json(cfg) -> dict:
    """A config dataclass as JSON-ready values (paths as strings, tuples as lists)."""
    return {k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
            for k, v in asdict(cfg).items()}


def write(run_dir: Path, summary: dict) -> dict:
    """Write run_dir/summary.json atomically and return the summary."""
    write_text(Path(run_dir) / "summary.json", json.dumps(summary, indent=2))
    return summary
