"""User-facing errors and the one way every command reports them."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
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


def creatable(path: Path, flag: str) -> Path:
    """Check, without creating anything, that `path` is or can become a writable directory: its
    nearest existing ancestor must be a writable directory. UsageError naming `flag` otherwise.
    Commands check every output directory this way before `writable_dir` creates any of them,
    so a bad one leaves no other behind."""
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "not a directory" if not existing.is_dir() else "no write permission"
        raise UsageError(f"{flag} {path}: not writable ({existing}: {why}); choose a directory you can write to")
    return path


def run_cli(main, prog: str, argv=None, onednn: bool = True) -> int:
    """Run `main(argv)` with TensorFlow's start-up chatter filtered from stderr (kerasdl.quiet) and
    its oneDNN kernels on or off (kerasdl.use_onednn); turn a UsageError into `prog: error: ...` on
    stderr and exit code 2."""
    from kerasdl import quiet, use_onednn

    use_onednn(onednn)  # before any TensorFlow import: the commands import it lazily, after this
    quiet.install()
    try:
        return main(argv) or 0
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def add_quiet(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The section commands' --quiet flag (see `progress`); returns `p`."""
    p.add_argument("--quiet", action="store_true",
                   help="no progress lines on stderr (stdout keeps only the JSON summary either way)")
    return p


def add_defaulted(p: argparse.ArgumentParser, config, flags) -> argparse.ArgumentParser:
    """Add `flags`, (flag, type, help) triples, each defaulting to `config`'s field of the same name
    (--mlp-lr -> config.mlp_lr) and saying that default at the end of its help; returns `p`."""
    for flag, kind, text in flags:
        default = getattr(config, flag.lstrip("-").replace("-", "_"))
        p.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")
    return p


def add_slice_flags(p: argparse.ArgumentParser, config, seed_help: str, precision_help: str) -> argparse.ArgumentParser:
    """The MNIST slice, seed and precision flags a training command shares with the others; returns `p`."""
    from kerasdl import AUTO_PRECISION_HELP, PRECISION_METAVAR, precision_arg

    p.add_argument("--limit", type=positive(int), help="first N training and test images only (quick runs)")
    p.add_argument("--validation-size", type=positive(float),
                   help="validation images carved from training: count or fraction (default 5000 or 10%%)")
    p.add_argument("--seed", type=int, default=config.seed, help=f"{seed_help} (default {config.seed})")
    p.add_argument("--precision", type=precision_arg, metavar=PRECISION_METAVAR, default=config.precision,
                   help=f"{precision_help}; {AUTO_PRECISION_HELP}")
    return p


def parse_config_args(p: argparse.ArgumentParser, argv) -> tuple[dict, bool]:
    """A section command's flags as its config's values, and whether --quiet was given (no config value)."""
    values = vars(p.parse_args(argv))
    return values, values.pop("quiet")


def entry_point(main, prog: str, onednn: bool = True):
    """The console-script entry point running `main` (`run_cli`): errors become one line and exit code 2."""

    def cli() -> None:
        sys.exit(run_cli(main, prog, onednn=onednn))

    cli.__doc__ = f"`{prog}`: console-script entry point; errors become one line and exit code 2."
    return cli


def print_summary(run, quiet: bool) -> int:
    """A section command's last step: `run()` with its progress on stderr (none when `quiet`), then the
    summary it returns printed as one JSON line, the last on stdout. Returns exit code 0."""
    with progress(quiet):
        summary = run()
    print(json.dumps(summary))
    return 0


def clock(seconds: float) -> str:
    """A duration for progress lines: `4 min 05 s`, or `42 s` under a minute."""
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


@contextlib.contextmanager
def progress(quiet: bool = False):
    """Where a command's progress goes while it works: Keras' progress bars and Keras Tuner's
    trial lines (which print to stdout) and kerasdl's own log lines all go to stderr, so stdout
    keeps only the JSON summary the command prints after; `quiet` silences all of it (the
    commands pass verbose=0 to Keras then, and what libraries still print is dropped). Warnings
    and errors are shown either way."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr, force=True)
    for name in ("kerasdl", "tuning"):
        logging.getLogger(name).setLevel(logging.WARNING if quiet else logging.INFO)
    logging.getLogger("tensorflow").setLevel(logging.WARNING)  # not "Assets written to ..." per export
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull if quiet else sys.stderr):
        yield


def positive(kind):
    """An argparse type: `kind` (int or float) strictly greater than zero."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text} must be > 0")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value
