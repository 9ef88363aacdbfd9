"""float32 against mixed_bfloat16, side by side in one run: seconds per epoch and test accuracy.

    python bench/precision.py [--models mlp cnn] [--precisions float32 mixed_bfloat16]
                              [--xla off|on|both] [--repeats N] [--out runs/bench]

Each model trains with its defaults (`python -m kerasdl.mnist <model>`, full data) once per
precision (and XLA setting), in this one process, one after the other; with --repeats the
whole round runs N times, interleaved, so a slow spell of the machine hits every setting
alike, and the table gives each setting's median and range. Writes precision.json and
precision.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kerasdl import PRECISIONS, mnist  # noqa: E402
from kerasdl.errors import positive, run_cli, writable_dir  # noqa: E402
from kerasdl.atomic import write_text  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/precision.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=["linear", "mlp", "cnn"], default=["mlp", "cnn"],
                   help="classifiers to train, each with its defaults (default: mlp cnn)")
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=["float32", "mixed_bfloat16"],
                   help="Keras dtype policies to compare; the first is the baseline of the ratios "
                        "(default: float32 mixed_bfloat16)")
    p.add_argument("--limit", type=positive(int), help="first N images only (a smoke test, not a measurement)")
    p.add_argument("--epochs", type=positive(int), help="epochs (default: each model's own)")
    p.add_argument("--xla", choices=["off", "on", "both"], default="off",
                   help="compile the train step with XLA (`--jit-compile` of kerasdl.mnist): off (the "
                        "commands' default), on, or both side by side")
    p.add_argument("--repeats", type=positive(int), default=1, help="run the whole round N times, interleaved (default 1)")
    p.add_argument("--out", type=Path, default=Path("runs/bench"),
                   help="where precision.json, precision.md and the runs go (default runs/bench)")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    out = writable_dir(args.out, "--out")
    from kerasdl import devices  # TensorFlow: after the arguments, so --help and usage errors stay quick and quiet

    xlas = {"off": [False], "on": [True], "both": [False, True]}[args.xla]
    settings = [(m, pr, x) for m in args.models for pr in args.precisions for x in xlas]
    runs = {s: [] for s in settings}
    for rep in range(args.repeats):
        for model, precision, xla in settings:
            tag = f"{model}_{precision}" + ("_xla" if xla else "")
            print(f"bench: {model} under {precision}{' with XLA' if xla else ''} "
                  f"(round {rep + 1}/{args.repeats})", file=sys.stderr)
            cfg = mnist.config_for(model, name=tag, precision=precision, limit=args.limit, epochs=args.epochs,
                                   jit_compile=xla, run_dir=out / "precision" / tag,
                                   export_dir=out / "precision" / "models", restart=True)
            s = mnist.train(cfg, verbose=0)
            runs[(model, precision, xla)].append(s)
    rows = []
    for (model, precision, xla), done in runs.items():
        per_epoch = [s["seconds_per_epoch"] for s in done]
        acc = [s["test_accuracy"] for s in done]
        rows.append({"model": model, "precision": precision, "xla": xla, "epochs": done[0]["epochs"],
                     "seconds_per_epoch": round(statistics.median(per_epoch), 3),
                     "seconds_per_epoch_runs": per_epoch, "test_accuracy": round(statistics.median(acc), 4),
                     "test_accuracy_runs": acc})
    for r in rows:  # against the same model in the first precision, without XLA (the commands' default)
        base = next(b for b in rows if b["model"] == r["model"] and b["precision"] == args.precisions[0]
                    and b["xla"] == xlas[0])
        r["epoch_time_ratio"] = round(r["seconds_per_epoch"] / base["seconds_per_epoch"], 3)
        r["accuracy_points_vs_first"] = round(100 * (r["test_accuracy"] - base["test_accuracy"]), 2)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, bf16 native: {devices.bf16_supported()}")
    result = {"when": when, "machine": machine, "repeats": args.repeats, "rows": rows}
    head = f"Measured {when} on {machine}"
    lines = [head + (f"; median of {args.repeats} interleaved runs, range in parentheses." if args.repeats > 1
                     else "."), "",
             f"| model | precision | XLA | epochs | s/epoch | ratio | test acc | points vs {args.precisions[0]} |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spread = (f" ({min(r['seconds_per_epoch_runs']):.2f}-{max(r['seconds_per_epoch_runs']):.2f})"
                  if args.repeats > 1 else "")
        lines.append(f"| {r['model']} | {r['precision']} | {'on' if r['xla'] else 'off'} | {r['epochs']} | "
                     f"{r['seconds_per_epoch']:.2f}{spread} | {r['epoch_time_ratio']:.2f} | "
                     f"{r['test_accuracy']:.4f} | {r['accuracy_points_vs_first']:+.2f} |")
    write_text(out / "precision.json", json.dumps(result, indent=2))
    write_text(out / "precision.md", "\n".join(lines) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "python bench/precision.py"))
