"""The tf.data tuner's wait (issue #23): how long `model.fit` takes to return after its last epoch,
and how long a per-epoch validation takes, with tf.data's autotuning on (TensorFlow's default) and
off (what kerasdl.training's pipelines use).

    python bench/fit_wait.py [--epochs 2 5 12] [--limit 20000] [--threads 1]
                             [--out runs/bench/fit_wait.json]

With autotuning on, each tf.data iterator runs a thread that re-tunes the pipeline on a period of
10 ms doubling up to a minute, and freeing the iterator waits for that thread's current sleep to
end; `model.fit` frees its training iterator when it returns. For each entry of `--epochs` this
fits the MLP (kerasdl.mnist's defaults, first `--limit` images, 10% of them for validation) on
the training pipeline as it was (tf.data.AUTOTUNE for the gathers and the prefetch, autotuning on)
and then on `training.train_batches` as it is (autotuning off), and records: the fit's training time
(first epoch begun to last epoch ended), the wait from the last epoch's end to fit's return, the
time to free what the fit left behind (the model and the datasets, then a garbage collection:
where an iterator outlives fit, its wait comes here), the trained weights' sha256 (the same
for both pipelines: same batches, same order), and the median per-epoch validation: from arrays as Keras builds it (autotuned, 32-image batches:
what fit did before), and from `training.eval_batches` (built once, 1,000-image batches, not
autotuned: what it does now). Prints the machine and a Markdown table; writes JSON to --out.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kerasdl import cpu  # noqa: E402
from kerasdl.errors import UsageError, positive, run_cli, writable_dir  # noqa: E402
from kerasdl.atomic import write_text  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/fit_wait.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=positive(int), nargs="+", default=[2, 5, 12],
                   help="fit lengths to try, in epochs, each with autotuning on and off (default 2 5 12)")
    p.add_argument("--limit", type=positive(int), default=20000,
                   help="first N MNIST training images (default 20000: 18,000 to train on, 2,000 to validate)")
    p.add_argument("--threads", type=positive(int), default=1,
                   help="TensorFlow threads (default 1: what each of the report's two workers has on 2 cores)")
    p.add_argument("--out", type=Path, default=Path("runs/bench/fit_wait.json"),
                   help="the JSON result (default runs/bench/fit_wait.json)")
    return p


def one_fit(split, epochs: int, autotune: bool, threads: int) -> dict:
    import keras
    import tensorflow as tf

    from kerasdl import models, training

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.begin = self.end = None
            self.validation: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.begin = self.begin or time.perf_counter()

        def on_test_begin(self, logs=None):
            self.test_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # after the validation and its iterator's end
            self.validation.append(time.perf_counter() - self.test_start)
            self.end = time.perf_counter()

    training.seed_everything(0)
    if autotune:  # the pipeline as training.train_batches built it before: tuned by tf.data
        images, labels = tf.constant(split.x_train), tf.constant(split.y_train)
        n = len(images)
        batches = (tf.data.Dataset.range(n).shuffle(n, seed=0, reshuffle_each_iteration=True).batch(128)
                   .map(lambda i: (tf.gather(images, i), tf.gather(labels, i)), num_parallel_calls=tf.data.AUTOTUNE)
                   .repeat().prefetch(tf.data.AUTOTUNE))
        steps = -(-n // 128)
        validation = (split.x_val, split.y_val)  # arrays: Keras builds the pipeline, autotuned
    else:
        batches, steps = training.train_batches(split.x_train, split.y_train, 128, seed=0)
        validation = training.eval_batches(split.x_val, split.y_val, 1000)
    model = models.compile_classifier(models.mlp())
    model.steps_per_execution = training.execution_steps(steps)
    clock = Clock()
    model.fit(batches, steps_per_epoch=steps, epochs=epochs, validation_data=validation, callbacks=[clock],
              verbose=0)
    returned = time.perf_counter()
    digest = training.weights_digest(model)
    del model, batches, validation  # what fit left referenced goes now (a Python garbage cycle: at a collection)
    gc.collect()
    return {"epochs": epochs, "autotune": autotune, "threads": threads,
            "training_s": round(clock.end - clock.begin, 3), "return_wait_s": round(returned - clock.end, 3),
            "freed_s": round(time.perf_counter() - returned, 3),
            "validation_s": round(statistics.median(clock.validation), 3), "weights_sha256": digest}


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    out_dir = writable_dir(args.out.parent, "--out")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from kerasdl import data

    split = data.mnist_split("flat", limit=args.limit)
    if len(split.x_val) == 0:
        raise UsageError(f"--limit {args.limit} leaves no validation images (10% of the limit); use 100 or more")
    info = cpu()
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    print(f"Measured {when}; CPU: {info['text']}; {args.threads} TensorFlow thread(s); MLP on "
          f"{len(split.x_train)} training and {len(split.x_val)} validation images.\n")
    print("| epochs | autotune | training s | fit returns after its last epoch, s | model freed after that, s "
          "| validation per epoch, s | weights (sha256) |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for epochs in args.epochs:
        for autotune in (True, False):
            row = one_fit(split, epochs, autotune, args.threads)
            rows.append(row)
            print(f"| {epochs} | {'on (before)' if autotune else 'off (now)'} | {row['training_s']:.2f} | "
                  f"{row['return_wait_s']:.2f} | {row['freed_s']:.2f} | {row['validation_s']:.3f} | "
                  f"{row['weights_sha256'][:12]} |")
            sys.stdout.flush()
    write_text(out_dir / args.out.name, json.dumps({"when": when, "cpu": info["text"], "limit": args.limit,
                                                    "rows": rows}, indent=2))
    print(f"bench: wrote {out_dir / args.out.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, "python bench/fit_wait.py"))
