"""Files written in one step: a reader, or a run killed mid-write, sees the old file or the new one,
never half of one. Everything kerasdl writes for others to read (summaries, history.csv, figures,
the report, the resume metadata, the .keras link) goes through here."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def replacing(path, suffix: str = ""):
    """Yield a temporary sibling of `path` to write; once the block ends, rename it onto `path` (the
    one atomic step). The name is `.NAME.tmp-PID` plus `suffix` (e.g. ".png", for writers that read
    the format from the name): hidden, and distinct for every process writing the same file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:  # the write failed (a full disk, an error, an interrupt): no stray half file
        tmp.unlink(missing_ok=True)
        raise


def write_text(path, text: str) -> Path:
    """Write `text` to `path` atomically; return the path."""
    path = Path(path)
    with replacing(path) as tmp:
        tmp.write_text(text)
    return path
