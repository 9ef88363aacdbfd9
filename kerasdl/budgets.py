"""The quick budgets: small slices and few epochs, for `python -m kerasdl.report --quick` and the
notebooks' `QUICK = True` (minutes on 2 cores; the numbers are not the write-up's). One home, so the
report and every notebook run the same quick experiments."""

from __future__ import annotations

QUICK = {  # section: overrides of its config
    "theory": dict(steps=8, mlp_images=300, mlp_units=16, shared_units=16, shared_epochs=1, shared_seeds=1,
                   shared_images=1000, contrast_epochs=5, contrast_seeds=2),
    "toy": dict(seeds=2, iterations=100),
    "mnist": dict(limit=1500, epochs=1),
    "tuning": dict(limit=1000, epochs=2, units=32, lrs=(1e-3, 1.0, 10.0), depths=(1, 2)),
    "tuning_lr_sgd": dict(limit=1000, epochs=2, units=32),
    "autoencoder": dict(limit=1500, epochs=1),
}


def quick(section: str, on: bool = True) -> dict:
    """The quick budget of `section` as config overrides, or {} (the write-up's budget) when not `on`."""
    return dict(QUICK[section]) if on else {}
