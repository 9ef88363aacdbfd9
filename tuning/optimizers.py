"""Which optimizer makes learning rate 1 learn and then collapse, as the write-up saw?

Our learning-rate search trains the MLP with Adam, and at rate 1 Adam never learns. The
write-up's curve (learns, then collapses) suggests plain SGD or SGD with momentum. This runs
rates 1 and 10 with both on the same MLP, briefly, and records each validation curve; the
claim `lr_1_collapses` quotes them. Each run is `training.fit` in its own directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from kerasdl.summary import config_json, write as write_summary

log = logging.getLogger("tuning")


@dataclass
class OptimizerRatesConfig:
    """Rates x optimizers on the MLP; (name, momentum) per optimizer, SGD only."""

    lrs: tuple[float, ...] = (1.0, 10.0)
    optimizers: tuple[tuple[str, float], ...] = (("sgd", 0.0), ("sgd", 0.9))
    epochs: int = 15
    limit: int | None = 20000
    units: int = 512
    batch_size: int = 128
    seed: int = 0
    run_dir: Path = field(default_factory=lambda: Path("runs/tuning/lr_sgd"))


def run(cfg: OptimizerRatesConfig, verbose: int = 0) -> dict:
    """Train every (optimizer, rate) pair; a pair still at chance after 5 epochs stops there."""
    from kerasdl import data, locks, models, training
    from tuning.search import StopAtChance

    split = data.mnist_split("flat", limit=cfg.limit)
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    runs = []
    with locks.run_dir_lock(cfg.run_dir, "pass another --runs, or wait for it to finish"):
        for optimizer, momentum in cfg.optimizers:
            label = f"{optimizer}+momentum {momentum:g}" if momentum else optimizer
            for lr in cfg.lrs:
                def make(steps_per_epoch, lr=lr, optimizer=optimizer, momentum=momentum):
                    return models.compile_classifier(models.mlp(units=cfg.units), optimizer, lr, momentum)

                chance = StopAtChance()
                fit_cfg = training.FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                                             restart=True, terminate_on_nan=True, tensorboard=False, backup=False,
                                             test_curve=False, verbose=verbose, title=f"MLP, {label}, lr {lr:g}")
                result = training.fit(make, split, Path(cfg.run_dir) / f"{optimizer}-m{momentum:g}-lr{lr:g}",
                                      fit_cfg, callbacks=[chance])
                curve = [r["val_accuracy"] for r in result.history]
                log.info("optimizer rates: %s lr %g: validation accuracy peak %.3f, final %.3f", label, lr,
                         max(curve), curve[-1])
                runs.append({"optimizer": label, "momentum": momentum, "lr": lr, "diverged": result.diverged,
                             "stopped_at_chance": chance.stopped, "epochs_run": len(curve),
                             "val_accuracy_per_epoch": curve, "history_csv": str(result.history_csv)})
        summary = {"runs": runs, "epochs": cfg.epochs, "train_images": int(len(split.x_train)),
                   "config": config_json(cfg)}
        return write_summary(cfg.run_dir, summary)
