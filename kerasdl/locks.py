"""One writer per directory: an exclusive OS-level lock on a file inside it.

    with locks.hold(run_dir / ".lock", "run directory runs/cnn", "pass --name to run beside it, or wait"):
        ...

The lock is `fcntl.flock` on an open file, so the kernel drops it when the process ends,
`kill -9` included: there is never a stale lock to clear by hand. The file keeps the
holder's pid, host, start time and command line, which a second process that finds the
lock taken names in its one-line error. The file itself is never deleted (deleting a lock
file while another process has it open would let two processes hold "the" lock).
Holding is reentrant within a process: a command that already holds a lock can call code
that takes it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from kerasdl.errors import UsageError

_held: dict[str, list] = {}  # resolved lock path -> [fd, depth]


def holder(path) -> str:
    """Who holds the lock at `path`, in words (from what the holder wrote into the file)."""
    try:
        info = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a process that has not written its name yet"
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.get("started", 0)))
    return f"pid {info.get('pid')} on {info.get('host')}, started {started}, command `{info.get('command')}`"


@contextlib.contextmanager
def hold(path, what: str, fix: str):
    """Hold the exclusive lock `path` (its directory must exist) while the block runs.

    Taken already by another process: UsageError "`what` is in use by <holder>; `fix`".
    """
    path = Path(path)
    key = str(path.resolve())
    if key in _held:
        _held[key][1] += 1
        try:
            yield path
        finally:
            _held[key][1] -= 1
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UsageError(f"{what}: cannot create its lock file {path} ({exc.strerror}); "
                         "choose a directory you can write to") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UsageError(f"{what} is in use by another run ({holder(path)}); {fix}") from None
    try:
        argv = list(getattr(sys, "orig_argv", None) or ["python", *sys.argv])  # as typed: "python -m kerasdl.mnist ..."
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": " ".join(" ".join([Path(argv[0]).name, *argv[1:]]).split())[:300]}  # one line
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        _held[key] = [fd, 1]
        yield path
    finally:
        _held.pop(key, None)
        os.close(fd)  # closing the only descriptor releases the flock


def is_held(path) -> bool:
    """Whether this process holds the lock at `path`."""
    return str(Path(path).resolve()) in _held


def run_dir_lock(run_dir: Path, fix: str = "pass --name (or --run-dir) to run beside it, or wait for it to finish"):
    """The lock of a run directory (which must exist): one run writes it at a time."""
    return hold(Path(run_dir) / ".lock", f"run directory {run_dir}", fix)


def one_run_at_a_time(run=None, *, reads_mnist: bool = False):
    """Decorate a section's `run(cfg, ...)`: the call creates cfg.run_dir and holds its lock.

    Nothing is created before the inputs are known good: every output directory of `cfg` is
    checked first (errors.creatable), and with `reads_mnist` the dataset is loaded and validated,
    so bad data or a bad directory leaves no run or export directory behind."""
    import functools

    from kerasdl.errors import creatable, writable_dir

    def decorate(run):
        @functools.wraps(run)
        def locked(cfg, *args, **kwargs):
            for attr, flag in (("run_dir", "--run-dir"), ("export_dir", "--export-dir")):
                if getattr(cfg, attr, None) is not None:
                    creatable(getattr(cfg, attr), flag)
            if reads_mnist:
                from kerasdl import data

                data.load_mnist()
            run_dir = writable_dir(cfg.run_dir, "--run-dir")
            with run_dir_lock(run_dir, "pass another --run-dir to run beside it, or wait for it to finish"):
                return run(cfg, *args, **kwargs)

        return locked

    return decorate(run) if run is not None else decorate
