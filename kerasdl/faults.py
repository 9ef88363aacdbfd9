"""Fault injection for the crash tests: `point(name)` kills the process there, as `kill -9` would,
when the environment variable KERASDL_FAULT names that point. Unset (always, outside tests),
it does nothing.

Points: after_fit (training done, nothing evaluated or exported), export_written (the new
version complete in its temporary directory, not yet renamed into place), export_published
(the version renamed into place, <name>.keras not yet replaced), before_summary (exported,
summary.json not yet written).
"""

from __future__ import annotations

import os
import signal

POINTS = ("after_fit", "export_written", "export_published", "before_summary")


def point(name: str) -> None:
    """Die here, without cleanup, when KERASDL_FAULT=name."""
    if os.environ.get("KERASDL_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
