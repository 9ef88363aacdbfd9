"""The whole write-up from one command: run every section (or reuse its results in runs/) and
write reports/REPORT.md, organised like the write-up, with a verdict for every claim.

    python -m kerasdl.report [--quick] [--fresh] [--out reports]

Every number in the report is read from the sections' summary.json files; none is typed in.
Its figures are copied beside it (`<out>/figures/`), so `--out docs/results` is a directory
that can be committed and read on its own; its head names the date, machine, commit and command.
The claims and their verdict rules live in `kerasdl.claims`; this module runs the stages and
renders the Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kerasdl import use_onednn
from kerasdl.atomic import replacing, write_text
from kerasdl.errors import UsageError, clock, entry_point, positive, progress, writable_dir

log = logging.getLogger("kerasdl.report")

@dataclass
class Stage:
    """One section run: where its summary lives and how to produce it."""

    name: str
    summary: Path
    run: Callable[[], dict]
    config: object = None  # the section's config object, where the stage has one


def stages(root: Path, quick: bool, fresh: bool = False, verbose: int | str = 0) -> list[Stage]:
    """Every section with its defaults, or with small budgets under --quick.

    `fresh` also makes the classifiers start over instead of resuming a backup, and tells the
    Keras Tuner searches to discard their finished trials (without it they would reload them
    from their oracle state and rerun nothing). `verbose` is passed to Keras (and Keras Tuner).
    """
    from kerasdl import autoencoder, mnist, theory, toy
    from kerasdl.budgets import quick as budget

    def classifier(model, name=None, **hp):
        quick_hp = budget("mnist", quick)
        cfg = mnist.config_for(model, name=name, run_dir=root / (name or model), export_dir=root / "saved_models",
                               restart=fresh or None, **{**hp, **quick_hp})
        return lambda: mnist.train(cfg, verbose=verbose), cfg

    def tuner(kind):
        from tuning.search import config_for, search

        cfg = config_for(kind, run_root=root / "tuning", export_dir=root / "saved_models", overwrite=fresh,
                         **budget("tuning", quick))
        return lambda: search(cfg, verbose=1 if verbose else 0), cfg

    theory_cfg = theory.TheoryConfig(run_dir=root / "theory", **budget("theory", quick))
    from tuning import optimizers

    # Rates 1 and 10 with plain SGD and SGD+momentum (the write-up's lr-1 curve): 15 epochs on 20,000 images.
    sgd_cfg = optimizers.OptimizerRatesConfig(run_dir=root / "tuning" / "lr_sgd",
                                              **budget("tuning_lr_sgd", quick))
    toy_cfg = toy.ToyConfig(run_dir=root / "toy", **budget("toy", quick))
    ae_cfg = autoencoder.AutoencoderConfig(run_dir=root / "autoencoder", export_dir=root / "saved_models", restart=fresh,
                                           **budget("autoencoder", quick))
    return [
        Stage("theory", root / "theory" / "summary.json", lambda: theory.run(theory_cfg), theory_cfg),
        Stage("toy", root / "toy" / "summary.json", lambda: toy.run(toy_cfg), toy_cfg),
        Stage("linear", root / "linear" / "summary.json", *classifier("linear")),
        Stage("mlp", root / "mlp" / "summary.json", *classifier("mlp")),
        Stage("cnn", root / "cnn" / "summary.json", *classifier("cnn")),
        Stage("mlp_sgd", root / "mlp_sgd" / "summary.json",
              *classifier("mlp", name="mlp_sgd", optimizer="sgd", momentum=0.9, lr=0.01)),
        Stage("mlp_sigmoid", root / "mlp_sigmoid" / "summary.json", *classifier("mlp", name="mlp_sigmoid",
                                                                               activation="sigmoid")),
        Stage("tuning_lr", root / "tuning" / "lr" / "summary.json", *tuner("lr")),
        Stage("tuning_lr_sgd", root / "tuning" / "lr_sgd" / "summary.json", lambda: optimizers.run(sgd_cfg), sgd_cfg),
        Stage("tuning_depth", root / "tuning" / "depth" / "summary.json", *tuner("depth")),
        Stage("autoencoder", root / "autoencoder" / "summary.json", lambda: autoencoder.run(ae_cfg, verbose), ae_cfg),
    ]


IGNORED_KEYS = {"run_dir", "export_dir", "run_root", "directory", "restart", "overwrite", "name"}
"""Config keys that say where results go or how a run starts, not what it measures."""


def config_differences(stage: Stage, summary: dict) -> dict:
    """{key: (stage's value, summary's value)} for every config key that changes what is measured."""
    from kerasdl.summary import config_json

    want = json.loads(json.dumps(config_json(stage.config))) if stage.config is not None else {}
    have = dict(summary.get("config") or {})
    if stage.config is not None:  # a key added since that summary was written counts as its default
        defaults = json.loads(json.dumps(config_json(type(stage.config)())))
        have = {**{k: v for k, v in defaults.items() if k not in have}, **have}
    keys = (set(want) | set(have)) - IGNORED_KEYS
    return {k: (want.get(k), have.get(k)) for k in sorted(keys) if want.get(k) != have.get(k)}


def describe_config(summary: dict) -> str:
    """A short `key=value` list of the config a summary was produced with (paths left out)."""
    cfg = summary.get("config") or {}
    return ", ".join(f"{k}={v}" for k, v in cfg.items() if k not in IGNORED_KEYS and v is not None)


# Seconds per stage of `python -m kerasdl.report --fresh --out docs/results` with --jobs 2 (two stages
# at a time, one TensorFlow thread each), 2026-11-29 13:57-14:18, AMD EPYC, 2 cores, nothing else
# running, commit 485b760 (oneDNN's kernels, the fused Adam); 20 min 47 s in all: a first full run
# here estimates its time left from these.
REFERENCE_TIMINGS = {"theory": 164.5, "toy": 109.5, "linear": 23.3, "mlp": 74.5, "cnn": 279.9, "mlp_sgd": 95.0,
                     "mlp_sigmoid": 68.5, "tuning_lr": 695.6, "tuning_lr_sgd": 64.1, "tuning_depth": 651.5,
                     "autoencoder": 231.9}


def run_stages(all_stages: list[Stage], fresh: bool, reuse_only: bool = False,
               timings_path: Path | None = None, reference: dict | None = None,
               jobs: int = 1, rebuild: dict | None = None) -> tuple[dict, dict]:
    """Run or reuse each stage; a failing stage is recorded and the others still run.

    A summary is reused only when it was produced with the stage's config (paths aside): a
    `python -m kerasdl.mnist cnn --epochs 1` left in runs/cnn is not "the" cnn. With
    `reuse_only`, a mismatch stops the report with the stage and the keys that differ.
    Progress: a line per stage with the time elapsed and an estimate of the time left, from
    each stage's duration the last time it ran here (kept in `timings_path`), else from
    `reference` (another machine's times, said so in the line).

    With `jobs` > 1 and `rebuild` (the arguments of `stages()` that made `all_stages`), the
    stages to run go to `jobs` worker processes, longest first (`run_in_workers`).
    """
    reference = reference or {}
    timings = json.loads(timings_path.read_text()) if timings_path and timings_path.exists() else {}
    to_run = {s.name for s in all_stages if fresh or not s.summary.exists()}  # before the config checks
    results, status, started, pending = {}, {}, time.perf_counter(), []

    def left_after(i: int) -> str:
        names = [s.name for s in all_stages[i:] if s.name in to_run]
        if not names:
            return "nothing left to run"
        rest = [timings.get(n, reference.get(n)) for n in names]
        untimed = rest.count(None)
        if untimed == len(rest):
            return "time left unknown: no stage still to run has been timed here yet"
        known = clock(sum(t for t in rest if t))
        borrowed = sum(n not in timings and n in reference for n in names)
        borrowed = "" if not borrowed else " (a 2-core reference run's times)" if borrowed == len(names) else \
            " (partly a 2-core reference run's times)"
        return f"about {known} left{borrowed}" if not untimed else \
            f"at least {known} left{borrowed} ({untimed} stage{'s' if untimed > 1 else ''} never timed here)"

    for i, stage in enumerate(all_stages, 1):
        prefix = f"[{i}/{len(all_stages)}] {stage.name}"
        summary = None
        if stage.summary.exists() and not fresh:
            try:
                summary = json.loads(stage.summary.read_text())
                if not isinstance(summary, dict) or not isinstance(summary.get("config") or {}, dict):
                    raise ValueError("not a JSON object with a config object")
            except (OSError, ValueError) as exc:  # a corrupt summary costs its stage a rerun, not the report
                if reuse_only:
                    raise UsageError(f"stage {stage.name}: {stage.summary} is unreadable ({exc.__class__.__name__}); "
                                     "drop --reuse-only to rerun it") from None
                log.info("%s: %s is unreadable (%s): running again", prefix, stage.summary, exc.__class__.__name__)
                to_run.add(stage.name)
        if summary is not None:
            diff = config_differences(stage, summary)
            if not diff:
                results[stage.name] = summary
                status[stage.name] = f"reused {stage.summary} ({describe_config(summary)})"
                log.info("%s: reusing %s", prefix, stage.summary)
                continue
            what = "; ".join(f"{k}: wanted {want!r}, found {have!r}" for k, (want, have) in diff.items())
            if reuse_only:
                raise UsageError(f"stage {stage.name}: {stage.summary} was produced with another config ({what}); "
                                 "drop --reuse-only to rerun it, or --runs to point elsewhere")
            log.info("%s: %s has another config (%s): running again", prefix, stage.summary, what)
            to_run.add(stage.name)
        elif reuse_only and not stage.summary.exists():
            raise UsageError(f"stage {stage.name}: no results at {stage.summary}; drop --reuse-only to run it")
        pending.append((i, stage))
    if jobs > 1 and rebuild is not None and len(pending) > 1:
        run_in_workers(pending, len(all_stages), jobs, rebuild, results, status, timings, timings_path, reference)
        return results, {s.name: status[s.name] for s in all_stages if s.name in status}  # the sections' order
    for i, stage in pending:
        prefix = f"[{i}/{len(all_stages)}] {stage.name}"
        last = f"last run took {clock(timings[stage.name])}" if stage.name in timings else \
            f"about {clock(reference[stage.name])} on a 2-core reference run" if stage.name in reference else \
            "never timed here"
        log.info("%s: running (%s; %s elapsed, %s)", prefix, last, clock(time.perf_counter() - started),
                 left_after(i - 1))
        start = time.perf_counter()
        try:
            results[stage.name] = stage.run()
            seconds = time.perf_counter() - start
            _ran(stage.name, results[stage.name], seconds, status, timings, timings_path)
            log.info("%s: done in %s (%s elapsed, %s)", prefix, clock(seconds),
                     clock(time.perf_counter() - started), left_after(i))
        except Exception as exc:  # a stage's failure is reported, not fatal
            status[stage.name] = f"FAILED: {exc.__class__.__name__}: {exc}"
            log.error("%s failed:\n%s", prefix, traceback.format_exc())
    return results, status


def _ran(name: str, result: dict, seconds: float, status: dict, timings: dict, timings_path: Path | None) -> None:
    status[name] = f"ran now in {seconds:.0f} s ({describe_config(result)})"
    timings[name] = round(seconds, 1)
    if timings_path is not None:
        write_text(timings_path, json.dumps(timings, indent=2))


EIGEN_STAGES = ("toy",)
"""Stages whose worker runs TensorFlow's Eigen kernels rather than oneDNN's: the toy's four-input
convnet, where oneDNN's set-up per op outweighs its kernels (kerasdl.use_onednn; its command,
`python -m kerasdl.toy`, makes the same choice). Stages run in the report's own process (`--jobs
1`, `--quick`, or a single stage to run) share that process's kernels, oneDNN's: the kernels
change a result's last bits, not its meaning, so a summary does not record them."""


def worker_threads(jobs: int) -> int:
    """TensorFlow threads per worker process: the CPUs this process may use, shared out."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // jobs)


def run_in_workers(pending: list[tuple[int, Stage]], total: int, jobs: int, rebuild: dict, results: dict,
                   status: dict, timings: dict, timings_path: Path | None, reference: dict) -> None:
    """Run `pending` stages in `jobs` worker processes at once, longest (by their last timing) first.

    Each worker is a fresh process (spawned, so TensorFlow starts clean) that rebuilds the
    stage from `rebuild` and runs it with `worker_threads(jobs)` TensorFlow threads. On our
    2 cores two one-thread processes side by side got through 1.3x the MLP epochs per second of
    one two-thread process, and the report took 25 min 56 s against about 33 min one stage at a
    time (docs/report.md, "How long it takes"). A worker's
    output (Keras' bars, TensorFlow's lines, a traceback) goes to `<runs>/logs/<stage>.log`;
    a stage that fails or whose worker dies is marked FAILED with its log, and the rest run on.
    """
    import multiprocessing
    from multiprocessing.connection import wait

    logs = Path(rebuild["root"]) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    guess = {s.name: timings.get(s.name, reference.get(s.name, 0.0)) for _, s in pending}
    queue = sorted(pending, key=lambda item: -guess[item[1].name])
    threads, context, running = worker_threads(jobs), multiprocessing.get_context("spawn"), {}
    started = time.perf_counter()

    def left() -> str:
        rest = [max(guess[s.name] - (time.perf_counter() - t0 if t0 else 0.0), 0.0) for s, t0 in
                [(s, None) for _, s in queue] + [(s, t0) for _, s, _, t0 in running.values()]]
        if not any(rest):
            return "time left unknown"
        return f"about {clock(max(sum(rest) / jobs, max(rest)))} left with {jobs} workers"

    try:
        while queue or running:
            while queue and len(running) < jobs:
                i, stage = queue.pop(0)
                outcome = logs / f"{stage.name}.result.json"
                outcome.unlink(missing_ok=True)
                proc = context.Process(target=_stage_in_worker, name=f"kerasdl-report-{stage.name}",
                                       args=(rebuild, stage.name, threads, str(logs / f"{stage.name}.log"),
                                             str(outcome)))
                with _thread_env(threads):  # NumPy's and scikit-learn's BLAS (PCA) read it at import
                    proc.start()
                running[proc.sentinel] = (i, stage, proc, time.perf_counter())
                log.info("[%d/%d] %s: running in a worker, %d TensorFlow thread%s, output in %s (%s elapsed, %s)",
                         i, total, stage.name, threads, "" if threads == 1 else "s", logs / f"{stage.name}.log",
                         clock(time.perf_counter() - started), left())
            for sentinel in wait(list(running)):
                i, stage, proc, t0 = running.pop(sentinel)
                proc.join()
                seconds, outcome = time.perf_counter() - t0, logs / f"{stage.name}.result.json"
                prefix = f"[{i}/{total}] {stage.name}"
                try:
                    answer = json.loads(outcome.read_text())
                except (OSError, ValueError):
                    answer = {"error": f"its worker exited with code {proc.exitcode} before finishing"}
                if "result" in answer:
                    results[stage.name] = answer["result"]
                    _ran(stage.name, answer["result"], seconds, status, timings, timings_path)
                    log.info("%s: done in %s (%s elapsed, %s)", prefix, clock(seconds),
                             clock(time.perf_counter() - started), left())
                else:
                    status[stage.name] = f"FAILED: {answer['error']} (see {logs / f'{stage.name}.log'})"
                    log.error("%s failed: %s; its output is in %s", prefix, answer["error"], logs / f"{stage.name}.log")
    finally:
        for _, _, proc, _ in running.values():  # interrupted: no worker outlives the report
            proc.terminate()
            proc.join()


@contextlib.contextmanager
def _thread_env(threads: int):
    """The BLAS/OpenMP thread counts a spawned worker inherits, set only while it starts."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    before = {n: os.environ.get(n) for n in names}
    os.environ.update({n: str(threads) for n in names})
    try:
        yield
    finally:
        for n, v in before.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _stage_in_worker(rebuild: dict, name: str, threads: int, log_path: str, outcome_path: str) -> None:
    """A worker process: one stage, its output to `log_path`, its result or error to `outcome_path`."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    use_onednn(name not in EIGEN_STAGES)  # before TensorFlow starts: building the stages imports it
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    stage = {s.name: s for s in stages(Path(rebuild["root"]), rebuild["quick"], rebuild["fresh"],
                                       verbose=rebuild["verbose"])}[name]
    try:
        answer = {"result": stage.run()}
    except Exception as exc:  # reported by the parent, with this log
        traceback.print_exc()
        answer = {"error": f"{exc.__class__.__name__}: {exc}"}
    write_text(Path(outcome_path), json.dumps(answer, default=str))


# ---- the document ------------------------------------------------------------------------


def figure(path: str | None, out: Path, caption: str, stage: str) -> str:
    """The figure copied to <out>/figures/<stage>-<name> and linked relative to REPORT.md.

    Copied, not linked into runs/ (git-ignored): the report's directory carries its figures, so a
    committed `--out docs/results` shows them, and rerunning the report replaces them.
    """
    if not path or not Path(path).exists():
        return f"*(figure missing: {path})*\n"
    target = out / "figures" / f"{stage}-{Path(path).name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if Path(path).resolve() != target.resolve():
        with replacing(target) as tmp:
            shutil.copyfile(path, tmp)
    return f"![{caption}]({target.relative_to(out).as_posix()})\n"


def provenance(command: str, commit: str | None = None, jobs: int = 1) -> str:
    """When, where and from which code the numbers below were measured: date, machine, commit, command.
    `commit` is read when the run starts (a commit made while it runs is not the code that ran)."""
    from kerasdl.cards import environment

    env = environment()
    from kerasdl import cpu as cpu_info

    cpu = cpu_info()["text"]
    versions = ", ".join(f"{k} {v}" for k, v in env.items() if k not in ("machine", "exported_at"))
    # the thread count decides how float32 sums round: a rerun must match it to match the numbers
    threads = worker_threads(jobs)
    how = "one stage at a time, in one process" if jobs == 1 else \
        f"{jobs} stages at a time, {threads} TensorFlow thread{'s' if threads > 1 else ''} each"
    return (f"Written {env['exported_at']} on {env['machine']} ({cpu}); {versions}; "
            f"code at commit {commit or git_commit()}; command `{command}`; {how}.\n")


def git_commit() -> str:
    """The commit of the code that ran (`+ uncommitted changes` when the tree differs), or `unknown`."""
    here = Path(__file__).resolve().parent.parent

    def git(*args):
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", "kerasdl", "tuning").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return head.stdout.strip() + (" + uncommitted changes to kerasdl/ or tuning/" if dirty else "")


def serve_command(saved_models: Path) -> str:
    """The command that serves the report's own exports (they are not in saved_models/, the server's default)."""
    return f"python -m kerasdl.serve --models {shlex.quote(str(saved_models))}"


def serve_section(saved_models: Path) -> str:
    names = sorted(p.name for p in saved_models.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if saved_models.is_dir() else []
    listed = ", ".join(f"`{n}`" for n in names) if names else "none yet"
    return ("\n## The models, on the page\n\n"
            f"The classifiers and the autoencoder this report trained are exported to `{saved_models}/` "
            f"({listed}), not to `saved_models/`, where `python -m kerasdl.serve` looks by default. "
            f"Serve them, and draw on the page it prints, with:\n\n```bash\n{serve_command(saved_models)}\n```\n")


def claims_table(claims: list) -> str:
    rows = ["| claim | measured evidence | verdict |", "|---|---|---|"]
    rows += [f"| {c.claim} | {c.evidence} | **{c.verdict}** |" for c in claims]
    return "\n".join(rows) + "\n"


def tables(r: dict) -> dict[str, str]:
    """The sections' result tables, rendered from their summaries (never read back from their files)."""
    from kerasdl import autoencoder, toy
    from tuning.search import markdown_table as tuning_table

    out = {}
    if "toy" in r:
        out["2.4"] = toy.markdown_table(r["toy"]["results"], r["toy"].get("numpy_sgd_f1"))
    if "autoencoder" in r:
        out["2.6"] = autoencoder.markdown_table(r["autoencoder"]["methods"])
    for key, hp in (("tuning_lr", "lr"), ("tuning_depth", "hidden_layers")):
        if key in r:
            out["2.5.4"] = out.get("2.5.4", "") + (f"\n{key.replace('_', ' ')} results (ranked by validation "
                                                  f"accuracy):\n\n" + tuning_table(hp, r[key]["trials"]))
    return out


SECTIONS = [  # (number, title, stages it reads, figures: (stage, keys into its summary, caption))
    ("1", "1. Backprop facts", ["theory"],
     [("theory", ("figures", "sigmoid"), "sigmoid and derivative"),
      ("theory", ("figures", "init_loss"), "zero vs Glorot vs He"),
      ("theory", ("figures", "shared_accuracy"), "MLP with and without a shared activation parameter"),
      ("theory", ("figures", "shared_contrast"), "one shared-leaky unit vs one ReLU unit on abs(x)")]),
    ("2.4", "2.4 Toy convnet vs linear model", ["toy"], [("toy", ("figure",), "test MSE vs iteration")]),
    ("2.5", "2.5.1-2.5.3 MNIST classifiers", ["linear", "mlp", "cnn"],
     [(k, ("history_plot",), f"{k} history") for k in ("linear", "mlp", "cnn", "mlp_sgd", "mlp_sigmoid")]),
    ("2.5.4", "2.5.4 Learning rate and depth (Keras Tuner)", ["tuning_lr", "tuning_depth"],
     [("tuning_lr", ("figures", "curves"), "curves by learning rate"),
      ("tuning_depth", ("figures", "depth"), "depth trade-off")]),
    ("2.6", "2.6 Autoencoder vs PCA(2)", ["autoencoder"],
     [("autoencoder", ("figures", "latent"), "2-D codes"), ("autoencoder", ("figures", "reconstructions"),
                                                            "reconstructions")]),
]


def headline(r: dict, judged: list) -> str:
    """The few numbers a newcomer asks for first (the README links here instead of copying them by hand)."""
    rows = ["| result | measured |", "|---|---|"]
    for name in ("linear", "mlp", "cnn"):
        if isinstance(r.get(name), dict) and "test_accuracy" in r[name]:
            s = r[name]
            epochs = s.get("epochs", "?")
            rows.append(f"| {name}: test accuracy | {100 * s['test_accuracy']:.2f}% after {epochs} epoch"
                        f"{'' if epochs == 1 else 's'}, "
                        f"{s.get('train_seconds', 0):.0f} s of training |")
    methods = (r.get("autoencoder") or {}).get("methods") or {}
    if "deep" in methods and "pca" in methods:
        deep, pca = methods["deep"], methods["pca"]
        rows.append(f"| deep autoencoder vs PCA(2): test reconstruction MSE, 5-NN accuracy of the 2-D codes | "
                    f"{deep['reconstruction_mse']:.4f} vs {pca['reconstruction_mse']:.4f}, "
                    f"{deep['knn_accuracy']:.3f} vs {pca['knn_accuracy']:.3f} |")
    order = ["holds", "partly", "does not hold"]  # then any other verdict (not evaluated), as found
    verdicts = order + [v for v in dict.fromkeys(c.verdict for c in judged) if v not in order]
    tally = [(v, sum(c.verdict == v for c in judged)) for v in verdicts]
    rows.append(f"| the write-up's {len(judged)} claims | " + ", ".join(f"{v}: {n}" for v, n in tally if n) + " |")
    return "\n## Headline results\n\n" + "\n".join(rows) + "\n"


def _dig(d: dict, keys: tuple):
    for k in keys:
        d = d.get(k, {}) if isinstance(d, dict) else {}
    return d or None


def write_report(results: dict, status: dict, out: Path, quick: bool, seconds: float,
                 command: str | None = None, saved_models: Path | None = None, commit: str | None = None,
                 jobs: int = 1) -> Path:
    from kerasdl import claims

    r = results
    command = command or f"python -m kerasdl.report{' --quick' if quick else ''}"
    parts = ["# kerasdl report: the write-up, measured\n",
             f"Generated by `{command}` in {seconds:.0f} s. "
             + ("**Quick mode: tiny budgets, numbers are not the write-up's.** " if quick else "")
             + "Every number below is read from the sections' summary.json files.\n",
             provenance(command, commit, jobs), headline(r, claims.evaluate(r, missing=status)),
             "## Stages\n", "| stage | ran now or reused, and with which config |\n|---|---|\n"
             + "".join(f"| {name} | {state} |\n" for name, state in status.items())]
    rendered = tables(r)
    for number, title, needed, figures in SECTIONS:
        parts.append(f"\n## {title}\n")
        missing = [k for k in needed if k not in r]
        judged = claims.evaluate(r, section=number, missing={**status, **{k: status.get(k, "did not run") for k in needed}})
        if missing:
            parts.append(f"*Not available: stage {', '.join(missing)} failed or did not run.*\n")
            if judged:
                parts.append(claims_table(judged))
            continue
        parts.append(claims_table(judged))
        parts += [figure(_dig(r.get(stage, {}), keys), out, caption, stage) for stage, keys, caption in figures]
        if number in rendered:
            parts.append("\n" + rendered[number])
    if saved_models is not None:
        parts.append(serve_section(saved_models))
    report = out / "REPORT.md"
    return write_text(report, "\n".join(parts))  # a temporary file per process: reports into one --out never mix


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kerasdl.report",
                                description="Run every section (reusing results in runs/) and write reports/REPORT.md "
                                "with each claim of the write-up, its measured evidence and a verdict.")
    p.add_argument("--quick", action="store_true", help="small slices and few epochs (a few minutes); results go "
                   "to runs/quick/ so they never mix with full runs")
    p.add_argument("--fresh", action="store_true", help="rerun every stage even if its results exist")
    p.add_argument("--reuse-only", action="store_true",
                   help="never run a stage: stop with the stage and config keys that differ when results in "
                   "--runs were produced with another config, or are missing")
    p.add_argument("--runs", type=Path, help="where the sections' results live (default runs/, or runs/quick/)")
    p.add_argument("--out", type=Path, default=Path("reports"),
                   help="where REPORT.md and its figures/ go (default reports/; docs/results is the committed copy)")
    p.add_argument("--jobs", type=positive(int),
                   help="stages run at once, each in its own process with an equal share of the CPUs (default: 2 "
                   "where there are 2 or more CPUs, 1 with --quick, whose stages are shorter than a worker's start); "
                   "with more than 1, each stage's output goes to <runs>/logs/<stage>.log")
    p.add_argument("--quiet", action="store_true",
                   help="no progress lines (stage lines, Keras progress bars) on stderr; stdout keeps the JSON line")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = parser().parse_args(argv)
    jobs = args.jobs or (1 if args.quick else min(2, worker_threads(1)))
    commit = git_commit()
    root = writable_dir(args.runs or (Path("runs/quick") if args.quick else Path("runs")), "--runs")
    out = writable_dir(args.out, "--out")
    start = time.perf_counter()
    if args.reuse_only and args.fresh:
        raise UsageError("--reuse-only and --fresh contradict each other; pass one of them")
    from kerasdl import claims, locks

    # One report per results directory: two would train the same stages into the same run directories.
    with progress(args.quiet), locks.hold(root / ".report.lock", f"results directory {root}",
                                          "pass another --runs, or wait for the other report to finish"):
        rebuild = dict(root=root, quick=args.quick, fresh=args.fresh, verbose=0 if args.quiet else 2)
        results, status = run_stages(stages(**rebuild), args.fresh, args.reuse_only,
                                     timings_path=root / "report_timings.json",
                                     reference=None if args.quick else REFERENCE_TIMINGS, jobs=jobs, rebuild=rebuild)
        saved_models = root / "saved_models"
        report = write_report(results, status, out, args.quick, time.perf_counter() - start,
                              command=shlex.join(["python", "-m", "kerasdl.report", *argv]), saved_models=saved_models,
                              commit=commit, jobs=jobs)
        # the way from the write-up to the page: its models are not where the server looks by default
        log.info("wrote %s; its models are in %s/: serve them with  %s", report, saved_models,
                 serve_command(saved_models))
    failed = [k for k, v in status.items() if v.startswith("FAILED")]
    verdicts = {c.claim: c.verdict for c in claims.evaluate(results, missing=status)}
    not_evaluated = [k for k, v in verdicts.items() if v == claims.NOT_EVALUATED]
    print(json.dumps({"report": str(report), "stages": status, "failed": failed, "not_evaluated": not_evaluated,
                      "saved_models": str(saved_models), "serve": serve_command(saved_models)}))
    return 1 if failed else 0


cli = entry_point(main, "python -m kerasdl.report")


if __name__ == "__main__":
    cli()
