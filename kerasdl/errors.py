"""User-facing errors and the one way every command reports them."""

from __future__ import annotations

import os
import sys
from pathlib import Path


class UsageError(Exception):
    """A mistake in the user's input: reported as one line on stderr, exit code 2."""


def writable_dir(path: Path, flag: str) -> Path:
    """Create `path` if needed and prove it is writable, or raise a UsageError naming `flag`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: not writable ({exc.strerror}); choose a directory you can write to") from None
    return path


def run_cli(main, prog: str, argv=None) -> int:
    """Run `main(argv)`; turn a UsageError into `prog: error: ...` on stderr and exit code 2."""
    try:
        return main(argv) or 0
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
