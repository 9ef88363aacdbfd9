"""Which CPU kernels pay on this machine (issue #23): TensorFlow's oneDNN kernels against its
Eigen ones, and Adam's fused update (kerasdl.compat.fused_adam) against Keras' own.

    python bench/kernels.py [--rounds 2] [--epochs 2] [--limit 20000] [--threads 1]
                            [--out runs/bench/kernels.json]

oneDNN is chosen when TensorFlow starts (TF_ENABLE_ONEDNN_OPTS), so each setting runs in its own
child process, on and off taking turns `--rounds` times. Each child trains the MLP and the
convnet (their kerasdl.mnist defaults, first `--limit` images) with the fused Adam and with
Keras' Adam: one warm-up epoch, then `--epochs` timed epochs, no callbacks or validation, with
`--threads` TensorFlow threads (1: what each of the report's two workers has on 2 cores). The
table gives the median epoch by process CPU time (steadier than wall time on a shared machine)
and by wall time. Prints the machine and a Markdown table; writes everything as JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kerasdl import cpu  # noqa: E402
from kerasdl.errors import positive, run_cli, writable_dir  # noqa: E402
from kerasdl.atomic import write_text  # noqa: E402

CHILD = "KERASDL_KERNELS_CHILD"  # set in the children this script starts: they measure, it tabulates
MODELS = ("mlp", "cnn")
ADAMS = ("fused", "keras")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/kernels.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=positive(int), default=2,
                   help="times each oneDNN setting runs, taking turns with the other (default 2)")
    p.add_argument("--epochs", type=positive(int), default=2, help="timed epochs per model and Adam (default 2)")
    p.add_argument("--limit", type=positive(int), default=20000,
                   help="first N MNIST training images, 10%% of them carved for validation as kerasdl.mnist "
                        "--limit does (default 20000)")
    p.add_argument("--threads", type=positive(int), default=1, help="TensorFlow threads per child (default 1)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/kernels.json"),
                   help="the JSON result (default runs/bench/kernels.json)")
    return p


def child(args) -> dict:
    """One process: every model with both Adams, under whatever oneDNN setting it was started with."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from tensorflow.python.util import _pywrap_util_port

    from kerasdl import data, mnist, training

    out = {"onednn": bool(_pywrap_util_port.IsMklEnabled())}
    for name in MODELS:
        cfg = mnist.config_for(name, limit=args.limit)
        split = data.mnist_split("image" if name == "cnn" else "flat", limit=args.limit)
        batches, steps = training.train_batches(split.x_train, split.y_train, cfg.batch_size, cfg.seed)
        for adam in (ADAMS if args.rounds % 2 else ADAMS[::-1]):  # the parent alternates which goes first
            training.seed_everything(cfg.seed)
            model = mnist.make_model_fn(cfg)(steps)
            if adam == "keras":
                vars(model.optimizer).pop("update_step")  # back to Keras' Adam.update_step
            model.steps_per_execution = training.execution_steps(steps)
            model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0)  # warm-up: tracing
            walls, cpus = [], []
            for epoch in range(1, args.epochs + 1):
                wall, used = time.perf_counter(), time.process_time()
                model.fit(batches, steps_per_epoch=steps, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - used)
            out[f"{name}/{adam}"] = {"wall": walls, "cpu": cpus, "steps": steps}
    return out


def table(results: list[dict]) -> str:
    def median(onednn: bool, key: str, what: str) -> float:
        return statistics.median(x for r in results if r["onednn"] == onednn for x in r[key][what])

    lines = ["| model | Adam | CPU s/epoch, oneDNN on | off | on / off | wall s/epoch, on | off |",
             "|---|---|---|---|---|---|---|"]
    for name in MODELS:
        for adam in ADAMS:
            key = f"{name}/{adam}"
            on, off = median(True, key, "cpu"), median(False, key, "cpu")
            lines.append(f"| {name} | {adam} | {on:.2f} | {off:.2f} | {on / off:.2f} | "
                         f"{median(True, key, 'wall'):.2f} | {median(False, key, 'wall'):.2f} |")
    for name in MODELS:
        ratio = median(True, f"{name}/fused", "cpu") / median(True, f"{name}/keras", "cpu")
        lines.append(f"\n{name}, oneDNN on: fused Adam / Keras' Adam = {ratio:.2f} in CPU time per epoch.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if os.environ.get(CHILD) == "1":
        print(json.dumps(child(args)))
        return 0
    out = args.out
    writable_dir(out.parent, "--out")
    info = cpu()
    print(f"machine: {info['text']}; {args.threads} TensorFlow thread(s) per child; "
          f"first {args.limit} images; {args.rounds} rounds of {args.epochs} epochs", file=sys.stderr)
    results = []
    for round_ in range(1, args.rounds + 1):
        for setting in ("1", "0"):
            start = time.perf_counter()
            # --rounds tells a child its round: odd rounds train with the fused Adam first, even ones second
            argv_child = [sys.executable, __file__, "--epochs", str(args.epochs), "--limit", str(args.limit),
                          "--threads", str(args.threads), "--rounds", str(round_)]
            env = {k: v for k, v in os.environ.items() if k != "KERASDL_ONEDNN"}  # explicit: the child keeps it
            done = subprocess.run(argv_child, env={**env, "TF_ENABLE_ONEDNN_OPTS": setting, CHILD: "1"},
                                  capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stderr[-3000:])  # the child's own error, then one line of ours
                print(f"python bench/kernels.py: error: the child with TF_ENABLE_ONEDNN_OPTS={setting} exited with "
                      f"code {done.returncode} (its output above)", file=sys.stderr)
                return 1
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if result["onednn"] != (setting == "1"):
                print(f"python bench/kernels.py: error: TF_ENABLE_ONEDNN_OPTS={setting} did not take effect in the "
                      "child (was TensorFlow imported before it started?)", file=sys.stderr)
                return 1
            results.append(result)
            print(f"round {round_} of {args.rounds}, oneDNN {'on' if setting == '1' else 'off'}: "
                  f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    text = table(results)
    print(f"{info['text']}\n\n{text}")
    write_text(out, json.dumps({"machine": info, "config": {k: (str(v) if isinstance(v, Path) else v)
                                                            for k, v in vars(args).items()},
                                "runs": results, "table": text}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "python bench/kernels.py"))
