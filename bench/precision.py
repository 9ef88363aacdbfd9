"""float32 against mixed_bfloat16, side by side in one run: seconds per epoch and test accuracy.

    python bench/precision.py [--models mlp cnn] [--precisions float32 mixed_bfloat16] [--out runs/bench]

Each model trains with its defaults (`python -m kerasdl.mnist <model>`, full data) once per
precision, in this one process, one after the other; writes precision.json and precision.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kerasdl import mnist, training  # noqa: E402
from kerasdl.errors import run_cli, writable_dir  # noqa: E402
from kerasdl.summary import write_text  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python bench/precision.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=["linear", "mlp", "cnn"], default=["mlp", "cnn"])
    p.add_argument("--precisions", nargs="+", choices=list(training.PRECISIONS), default=["float32", "mixed_bfloat16"])
    p.add_argument("--limit", type=int, help="first N images only (a smoke test, not a measurement)")
    p.add_argument("--epochs", type=int, help="epochs (default: each model's own)")
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="where the JSON and table go")
    args = p.parse_args(argv)
    out = writable_dir(args.out, "--out")
    rows = []
    for model in args.models:
        for precision in args.precisions:
            print(f"bench: {model} under {precision}", file=sys.stderr)
            cfg = mnist.config_for(model, name=f"{model}_{precision}", precision=precision, limit=args.limit,
                                   epochs=args.epochs, run_dir=out / "precision" / f"{model}_{precision}",
                                   export_dir=out / "precision" / "models", restart=True)
            s = mnist.train(cfg, verbose=0)
            rows.append({k: s[k] for k in ("model", "precision", "epochs", "seconds_per_epoch", "train_seconds",
                                            "test_accuracy")})
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and b["precision"] == args.precisions[0])
        r["epoch_time_ratio"] = round(r["seconds_per_epoch"] / base["seconds_per_epoch"], 3)
        r["accuracy_points_vs_first"] = round(100 * (r["test_accuracy"] - base["test_accuracy"]), 2)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, bf16 native: {training.bf16_supported()}")
    result = {"when": when, "machine": machine, "rows": rows}
    lines = [f"Measured {when} on {machine}.", "", "| model | precision | epochs | s/epoch | ratio | test acc | "
             "points vs float32 |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['precision']} | {r['epochs']} | {r['seconds_per_epoch']:.2f} | "
              f"{r['epoch_time_ratio']:.2f} | {r['test_accuracy']:.4f} | {r['accuracy_points_vs_first']:+.2f} |"
              for r in rows]
    write_text(out / "precision.json", json.dumps(result, indent=2))
    write_text(out / "precision.md", "\n".join(lines) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "python bench/precision.py"))
