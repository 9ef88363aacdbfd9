"""Where one training epoch of the MLP and of the convnet goes (issue #23): each stage of our
training path timed on its own, by wall clock and by process CPU time.

    python bench/epoch_profile.py [--models mlp cnn] [--repeats N] [--limit N] [--quick]
                                  [--out runs/bench/epoch_profile.json]

Per model (its defaults from kerasdl.mnist, full data unless --limit), each part once as a
warm-up, then --repeats times (median reported):

  a  the input pipeline alone: one epoch of `training.train_batches`, no model
  b  the train steps, one step per graph call: `model.fit` on those batches, no callbacks, no validation
  c  the same with `steps_per_execution = training.execution_steps(steps)` (what training.fit sets)
  k  the kernels: (c) fed one batch held in memory, repeated (no shuffle, no gather)
  d  the per-epoch validation: `model.evaluate` on the validation images at the training batch
  e  the per-epoch test-set evaluation, as training.EpochRecorder does it
  f  the augmentation op alone (cnn): its RandomTranslation layer, training=True, once per batch
     of an epoch (on one batch held in memory, so no pipeline time is in it)
  g  one whole epoch through `training.fit` (a fresh model, every callback), split into its
     set-up, the epoch itself and what follows it

Op determinism is on throughout, as in every float32 run of training.fit. Prints the machine,
then one Markdown table per model; writes everything as JSON to --out.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kerasdl import CPU_FLAGS_OF_INTEREST, cpu, mnist  # noqa: E402
from kerasdl.errors import positive, run_cli, writable_dir  # noqa: E402
from kerasdl.atomic import write_text  # noqa: E402

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/epoch_profile.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", choices=["mlp", "cnn"], default=["mlp", "cnn"],
                   help="models to profile, each with its kerasdl.mnist defaults (default: mlp cnn)")
    p.add_argument("--repeats", type=positive(int),
                   help="timed runs of each part after its one warm-up; the table gives the median (default 2)")
    p.add_argument("--limit", type=positive(int),
                   help="first N training and N test images only, as kerasdl.mnist --limit (validation: 10%% of "
                        "them below 50,000); default: all, 55,000 training and 5,000 validation images")
    p.add_argument("--quick", action="store_true",
                   help="a smoke test: --limit 5000 --repeats 1 (an explicit --limit or --repeats wins)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/epoch_profile.json"),
                   help="the JSON result (default runs/bench/epoch_profile.json)")
    return p


# --- the machine -------------------------------------------------------------------------------

def machine() -> dict:
    info = cpu()
    import tensorflow as tf

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpu_model": info["model"], "cpu": info["text"], "flags": {f: f in info["flags"] for f in CPU_FLAGS_OF_INTEREST},
            "cpu_count": os.cpu_count(), "load_average_at_start": load,
            "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "tensorflow": tf.__version__, "python": platform.python_version()}


# --- timing --------------------------------------------------------------------------------------

def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds, all threads) of one call of `fn`."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(run, repeats: int, warmup=None) -> dict:
    """`warmup` (default: `run`) once, then `run` `repeats` times: medians and every run."""
    first = timed(warmup or run)
    runs = [timed(run) for _ in range(repeats)]
    return {"wall": statistics.median(w for w, _ in runs), "cpu": statistics.median(c for _, c in runs),
            "wall_runs": [w for w, _ in runs], "cpu_runs": [c for _, c in runs],
            "warmup_wall": first[0], "warmup_cpu": first[1]}


def clock():
    """A callback, last in training.fit's list: wall and CPU time at the train and epoch boundaries."""
    import keras

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks: dict[str, tuple[float, float]] = {}

        def _mark(self, name):
            self.marks.setdefault(name, (time.perf_counter(), time.process_time()))

        def on_train_begin(self, logs=None):
            self._mark("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            self._mark("epoch_begin")

        def on_epoch_end(self, epoch, logs=None):
            self._mark("epoch_end")

        def on_train_end(self, logs=None):
            self._mark("train_end")

    return Clock()


# --- the parts -----------------------------------------------------------------------------------

def profile(model_name: str, limit: int | None, repeats: int, scratch: Path) -> dict:
    import keras
    import tensorflow as tf

    from kerasdl import data, training

    cfg = mnist.config_for(model_name, limit=limit)
    split = data.mnist_split(mnist.LAYOUT[model_name], limit=limit)
    batch, seed = cfg.batch_size, cfg.seed
    steps = -(-len(split.x_train) // batch)
    k = training.execution_steps(steps)
    make = mnist.make_model_fn(cfg)
    parts: dict[str, dict] = {}

    def fresh_model(steps_per_execution: int):
        keras.utils.set_random_seed(seed)
        model = make(steps)
        model.steps_per_execution = steps_per_execution  # before its first fit builds the train function
        return model

    def say(part):
        print(f"bench: {model_name}: {part}", file=sys.stderr)

    say("a, the input pipeline alone")
    batches, _ = training.train_batches(split.x_train, split.y_train, batch, seed)
    iterator = iter(batches)

    def one_pipeline_epoch():
        for _ in range(steps):
            next(iterator)

    parts["a"] = measure(one_pipeline_epoch, repeats)

    def fit_epoch(model, dataset, n=steps):
        return lambda: model.fit(dataset, steps_per_epoch=n, epochs=1, verbose=0, shuffle=False)

    # b and c: each a fresh model and dataset; the warm-up is one graph call's worth of steps (k),
    # which traces the train function: its extra time over k steps at the timed rate is the trace.
    say("b, train steps, 1 per graph call")
    model_b = fresh_model(1)
    batches_b, _ = training.train_batches(split.x_train, split.y_train, batch, seed)
    parts["b"] = measure(fit_epoch(model_b, batches_b), repeats, warmup=fit_epoch(model_b, batches_b, k))

    say(f"c, train steps, {k} per graph call")
    model_c = fresh_model(k)
    batches_c, _ = training.train_batches(split.x_train, split.y_train, batch, seed)
    parts["c"] = measure(fit_epoch(model_c, batches_c), repeats, warmup=fit_epoch(model_c, batches_c, k))
    for key in ("b", "c"):
        p = parts[key]
        p["trace_wall"] = p["warmup_wall"] - p["wall"] * k / steps
        p["trace_cpu"] = p["warmup_cpu"] - p["cpu"] * k / steps

    say("k, the kernels: (c) on one batch held in memory")
    xb, yb = split.x_train[:batch], split.y_train[:batch]
    held = tf.data.Dataset.from_tensors((tf.constant(xb), tf.constant(yb))).repeat()
    parts["k"] = measure(fit_epoch(model_c, held), repeats, warmup=fit_epoch(model_c, held, k))

    say("d, the validation evaluate")
    parts["d"] = measure(lambda: model_c.evaluate(split.x_val, split.y_val, batch_size=batch, verbose=0), repeats)

    say("e, the test-set evaluation (EpochRecorder's)")

    def test_eval():  # training.EpochRecorder.on_epoch_end's branch, as it is
        if len(split.x_test) <= 2048:
            model_c.test_on_batch(split.x_test, split.y_test, return_dict=True)
        else:
            model_c.evaluate(split.x_test, split.y_test, batch_size=max(batch, 1000), verbose=0, return_dict=True)

    parts["e"] = measure(test_eval, repeats)

    if any(layer.name == "shift" for layer in model_c.layers):
        say("f, the augmentation op alone")
        shift = model_c.get_layer("shift")
        augment = tf.function(lambda x: shift(x, training=True))
        one = tf.constant(xb)

        def augment_epoch():
            for _ in range(steps):
                augment(one)

        parts["f"] = measure(augment_epoch, repeats, warmup=lambda: [augment(one) for _ in range(k)])

    say("g, one whole epoch through training.fit")
    fit_cfg = training.FitConfig(epochs=1, batch_size=batch, seed=seed, restart=True, keep_backup=True, verbose=0,
                                 title=f"{model_name} (epoch profile)")
    small = data.Split(*(a[:10 * batch] for a in (split.x_train, split.y_train, split.x_val, split.y_val,
                                                  split.x_test, split.y_test)))
    clocks = []

    def whole(dataset, run_dir):
        def run():
            probe = clock()
            training.fit(make, dataset, scratch / model_name / run_dir, fit_cfg, callbacks=[probe])
            probe.marks["returned"] = (time.perf_counter(), time.process_time())
            clocks.append(probe.marks)
        return run

    started = []

    def run_g():
        started.append((time.perf_counter(), time.process_time()))
        whole(split, f"g{len(started)}")()

    # the warm-up: 10 steps on 1,280 images (the process's first TensorBoard writer, weights file, plot)
    parts["g"] = measure(run_g, repeats, warmup=whole(small, "g0"))
    subs = {"g1": ("start", "train_begin"), "g2": ("epoch_begin", "epoch_end"), "g3": ("train_end", "returned")}
    timings = {s: [] for s in subs}
    for begin, marks in zip(started, clocks[1:]):
        marks = {**marks, "start": begin}
        for s, (a, b) in subs.items():
            timings[s].append((marks[b][0] - marks[a][0], marks[b][1] - marks[a][1]))
    for s, runs in timings.items():
        parts[s] = {"wall": statistics.median(w for w, _ in runs), "cpu": statistics.median(c for _, c in runs),
                    "wall_runs": [w for w, _ in runs], "cpu_runs": [c for _, c in runs]}
    return {"model": model_name, "train_images": len(split.x_train), "validation_images": len(split.x_val),
            "test_images": len(split.x_test), "batch_size": batch, "steps_per_epoch": steps,
            "steps_per_execution": k, "repeats": repeats, "parts": parts}


# --- the table -----------------------------------------------------------------------------------

def rows(result: dict) -> list[tuple[str, float, float]]:
    p, k = result["parts"], result["steps_per_execution"]
    n_val, n_test, bs = result["validation_images"], result["test_images"], result["batch_size"]
    test_how = (f"evaluate, batch {max(bs, 1000)}" if n_test > 2048 else "test_on_batch")
    out = [
        ("a. input pipeline alone (shuffle, gather, prefetch; no model)", p["a"]["wall"], p["a"]["cpu"]),
        ("b. train steps, 1 step per graph call", p["b"]["wall"], p["b"]["cpu"]),
        (f"c. train steps, {k} steps per graph call (training.fit's setting)", p["c"]["wall"], p["c"]["cpu"]),
        ("   (b) - (c): Keras' per-step Python work saved", p["b"]["wall"] - p["c"]["wall"],
         p["b"]["cpu"] - p["c"]["cpu"]),
        ("k. kernels: (c) fed one batch held in memory", p["k"]["wall"], p["k"]["cpu"]),
        ("   (c) - (k): the input pipeline inside the fit", p["c"]["wall"] - p["k"]["wall"],
         p["c"]["cpu"] - p["k"]["cpu"]),
        (f"d. validation: evaluate {n_val:,} images, batch {bs}", p["d"]["wall"], p["d"]["cpu"]),
        (f"e. test set: {n_test:,} images, {test_how}", p["e"]["wall"], p["e"]["cpu"]),
    ]
    if "f" in p:
        out.append(("f. augmentation op alone (RandomTranslation, every batch)", p["f"]["wall"], p["f"]["cpu"]))
    c, d, e, g = p["c"], p["d"], p["e"], p["g"]
    out += [
        ("g. whole epoch through training.fit (fresh model, all callbacks)", g["wall"], g["cpu"]),
        ("   g1. set-up: seed, build, compile, dataset, callbacks", p["g1"]["wall"], p["g1"]["cpu"]),
        ("   g2. the epoch: steps, validation, callbacks' epoch end", p["g2"]["wall"], p["g2"]["cpu"]),
        ("   g3. after it: history plot, return", p["g3"]["wall"], p["g3"]["cpu"]),
        ("   (g) - (c+d+e): callbacks, bookkeeping, one-time set-up", g["wall"] - c["wall"] - d["wall"] - e["wall"],
         g["cpu"] - c["cpu"] - d["cpu"] - e["cpu"]),
        (f"   of which: (c)'s first fit call less its {k} steps (trace, set-up)", c["trace_wall"],
         c["trace_cpu"]),
    ]
    return out


def table(result: dict) -> str:
    g = result["parts"]["g"]
    lines = [f"**{result['model']}**: {result['train_images']:,} training images, {result['steps_per_epoch']} steps "
             f"of {result['batch_size']} per epoch; median of {result['repeats']} run(s) after one warm-up", "",
             "| part | wall s | CPU s | share of (g): wall / CPU |", "|---|---|---|---|"]
    for name, wall, cpu_s in rows(result):
        share = f"{100 * wall / g['wall']:.0f}% / {100 * cpu_s / g['cpu']:.0f}%"
        lines.append(f"| {name} | {wall:.2f} | {cpu_s:.2f} | {share} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    limit = args.limit or (5000 if args.quick else None)
    repeats = args.repeats or (1 if args.quick else 2)
    out_dir = writable_dir(args.out.parent, "--out")
    # TensorFlow: after the arguments, so --help and usage errors stay quick and quiet
    from kerasdl import training

    training.seed_everything(0, deterministic=True)  # as every float32 training.fit run, for every part
    host = machine()
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"Measured {when}; CPU: {host['cpu_model']}; flags: "
          + ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in host["flags"].items())
          + f"; os.cpu_count() {host['cpu_count']}; TensorFlow {host['tensorflow']} threads: intra-op "
          f"{host['tf_intra_op_threads']}, inter-op {host['tf_inter_op_threads']} (0: TensorFlow's default, "
          f"one per core); load average at start {host['load_average_at_start']}.\n")
    results = []
    with tempfile.TemporaryDirectory(prefix="epoch_profile-") as scratch:
        for model_name in args.models:
            result = profile(model_name, limit, repeats, Path(scratch))
            result["table"] = [{"part": n, "wall": w, "cpu": c} for n, w, c in rows(result)]
            results.append(result)
            print(table(result))
            sys.stdout.flush()
    write_text(out_dir / args.out.name, json.dumps({"when": when, "machine": host, "limit": limit,
                                                    "repeats": repeats, "models": results}, indent=2))
    print(f"bench: wrote {out_dir / args.out.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "python bench/epoch_profile.py"))
