"""python -m tuning {lr,depth} [flags]: Keras Tuner searches over the MLP (section 2.5.4)."""

from __future__ import annotations

import argparse
from pathlib import Path

from kerasdl.errors import (add_quiet, add_slice_flags, creatable, entry_point, non_negative_float,
                            parse_config_args, positive, print_summary)


def parser() -> argparse.ArgumentParser:
    from tuning.search import DEFAULT_EPOCHS, SearchConfig

    d = SearchConfig()
    p = argparse.ArgumentParser(
        prog="python -m tuning",
        description="Grid searches over the MNIST MLP with Keras Tuner: 'lr' (learning rate) or 'depth' "
        "(hidden layers). Objective: validation accuracy; test curves are recorded, never tuned on. "
        "Interrupted searches resume from Keras Tuner's state; set KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP "
        "and KERASTUNER_ORACLE_PORT to run one chief and many workers (docs/distribution.md).",
    )
    p.add_argument("kind", choices=["lr", "depth"], help="lr: learning rates at fixed depth; depth: 1..4 hidden "
                   "layers at a fixed rate")
    p.add_argument("--lrs", type=positive(float), nargs="+", default=list(d.lrs),
                   help="learning rates of the lr search (default: 1e-4 1e-3 1e-2 1e-1 1 10)")
    p.add_argument("--depths", type=positive(int), nargs="+", default=list(d.depths),
                   help="hidden-layer counts of the depth search (default: 1 2 3 4)")
    p.add_argument("--lr", type=positive(float), default=d.lr, help="fixed rate of the depth search (default 1e-3)")
    p.add_argument("--hidden-layers", type=positive(int), default=d.hidden_layers,
                   help="fixed depth of the lr search (default 1)")
    p.add_argument("--units", type=positive(int), default=d.units, help="width of every hidden layer (default 512)")
    p.add_argument("--activation", choices=["relu", "sigmoid"], default=d.activation, help="hidden activation")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default=d.optimizer, help="adam (default) or sgd")
    p.add_argument("--momentum", type=non_negative_float, default=d.momentum, help="SGD momentum (default 0)")
    p.add_argument("--epochs", type=positive(int), help="epochs per trial (default: "
                   + ", ".join(f"{n} for {kind}" for kind, n in DEFAULT_EPOCHS.items()) + ")")
    p.add_argument("--batch-size", type=positive(int), default=d.batch_size, help="batch size (default 128)")
    add_slice_flags(p, d, seed_help="seed of every trial",
                    precision_help="Keras dtype policy of every trial (default float32, the write-up's numbers)")
    p.add_argument("--no-prune", dest="prune", action="store_false",
                   help="run every trial to the end (default: a trial whose validation accuracy stays at or below "
                   "0.2 for its first 5 epochs stops there and is flagged stopped_at_chance)")
    p.add_argument("--overwrite", action="store_true", help="discard finished trials and start the search over")
    p.add_argument("--run-root", type=Path, default=d.run_root,
                   help="searches go to RUN_ROOT/<kind>/ (default runs/tuning)")
    p.add_argument("--export-dir", type=Path, default=d.export_dir,
                   help="the best model goes to EXPORT_DIR/mlp_best_<kind>/ (default saved_models)")
    return add_quiet(p)


def main(argv=None) -> int:
    values, quiet = parse_config_args(parser(), argv)
    from tuning.search import config_for, search

    creatable(values["run_root"], "--run-root")  # checked now, created only once the data has loaded
    creatable(values["export_dir"], "--export-dir")
    kind = values.pop("kind")
    cfg = config_for(kind, **{**values, "lrs": tuple(dict.fromkeys(values["lrs"])),
                              "depths": tuple(dict.fromkeys(values["depths"]))})
    return print_summary(lambda: search(cfg, verbose=0 if quiet else 1), quiet)


cli = entry_point(main, "python -m tuning")


if __name__ == "__main__":
    cli()
