"""The whole write-up from one command: run every section (or reuse its results in runs/) and
write reports/REPORT.md, organised like the write-up, with a verdict for every claim.

    python -m kerasdl.report [--quick] [--fresh] [--out reports]

Every number in the report is read from the sections' summary.json files; none is typed in.
The claims and their verdict rules live in `kerasdl.claims`; this module runs the stages and
renders the Markdown.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kerasdl.errors import UsageError, clock, entry_point, progress, writable_dir
from kerasdl.atomic import write_text

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


# Seconds per stage of `python -m kerasdl.report --fresh` on a 2-core machine, 2026-11-28 10:35
# (README): a first full run here estimates its time left from these until it has its own.
REFERENCE_TIMINGS = {"theory": 291.5, "toy": 95.0, "linear": 14.7, "mlp": 60.2, "cnn": 112.9, "mlp_sgd": 43.8,
                     "mlp_sigmoid": 59.6, "tuning_lr": 624.6, "tuning_lr_sgd": 76.6, "tuning_depth": 418.3,
                     "autoencoder": 179.2}
# theory (with the shared-parameter experiments) and tuning_lr_sgd: measured alone, 2026-11-29, AMD EPYC,
# 2 cores, nothing else running; the other stages from the 2026-11-28 full run.


def run_stages(all_stages: list[Stage], fresh: bool, reuse_only: bool = False,
               timings_path: Path | None = None, reference: dict | None = None) -> tuple[dict, dict]:
    """Run or reuse each stage; a failing stage is recorded and the others still run.

    A summary is reused only when it was produced with the stage's config (paths aside): a
    `python -m kerasdl.mnist cnn --epochs 1` left in runs/cnn is not "the" cnn. With
    `reuse_only`, a mismatch stops the report with the stage and the keys that differ.
    Progress: a line per stage with the time elapsed and an estimate of the time left, from
    each stage's duration the last time it ran here (kept in `timings_path`), else from
    `reference` (another machine's times, said so in the line).
    """
    reference = reference or {}
    timings = json.loads(timings_path.read_text()) if timings_path and timings_path.exists() else {}
    to_run = {s.name for s in all_stages if fresh or not s.summary.exists()}  # before the config checks
    results, status, started = {}, {}, time.perf_counter()

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
        last = f"last run took {clock(timings[stage.name])}" if stage.name in timings else \
            f"about {clock(reference[stage.name])} on a 2-core reference run" if stage.name in reference else \
            "never timed here"
        log.info("%s: running (%s; %s elapsed, %s)", prefix, last, clock(time.perf_counter() - started),
                 left_after(i - 1))
        start = time.perf_counter()
        try:
            results[stage.name] = stage.run()
            seconds = time.perf_counter() - start
            status[stage.name] = f"ran now in {seconds:.0f} s ({describe_config(results[stage.name])})"
            timings[stage.name] = round(seconds, 1)
            if timings_path is not None:
                write_text(timings_path, json.dumps(timings, indent=2))
            log.info("%s: done in %s (%s elapsed, %s)", prefix, clock(seconds),
                     clock(time.perf_counter() - started), left_after(i))
        except Exception as exc:  # a stage's failure is reported, not fatal
            status[stage.name] = f"FAILED: {exc.__class__.__name__}: {exc}"
            log.error("%s failed:\n%s", prefix, traceback.format_exc())
    return results, status


# ---- the document ------------------------------------------------------------------------


def figure(path: str | None, out: Path, caption: str) -> str:
    if not path or not Path(path).exists():
        return f"*(figure missing: {path})*\n"
    return f"![{caption}]({os.path.relpath(Path(path).resolve(), out.resolve())})\n"


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


def _dig(d: dict, keys: tuple):
    for k in keys:
        d = d.get(k, {}) if isinstance(d, dict) else {}
    return d or None


def write_report(results: dict, status: dict, out: Path, quick: bool, seconds: float) -> Path:
    from kerasdl import claims

    r = results
    parts = ["# kerasdl report: the write-up, measured\n",
             f"Generated by `python -m kerasdl.report{' --quick' if quick else ''}` in {seconds:.0f} s. "
             + ("**Quick mode: tiny budgets, numbers are not the write-up's.** " if quick else "")
             + "Every number below is read from the sections' summary.json files.\n",
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
        parts += [figure(_dig(r.get(stage, {}), keys), out, caption) for stage, keys, caption in figures]
        if number in rendered:
            parts.append("\n" + rendered[number])
    report = out / "REPORT.md"
    return write_text(report, "\n".join(parts))  # a temporary file per process: reports into one --out never mix


def main(argv=None) -> int:
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
    p.add_argument("--out", type=Path, default=Path("reports"), help="where REPORT.md goes (default reports/)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress lines (stage lines, Keras progress bars) on stderr; stdout keeps the JSON line")
    args = p.parse_args(argv)
    root = writable_dir(args.runs or (Path("runs/quick") if args.quick else Path("runs")), "--runs")
    out = writable_dir(args.out, "--out")
    start = time.perf_counter()
    if args.reuse_only and args.fresh:
        raise UsageError("--reuse-only and --fresh contradict each other; pass one of them")
    from kerasdl import claims, locks

    # One report per results directory: two would train the same stages into the same run directories.
    with progress(args.quiet), locks.hold(root / ".report.lock", f"results directory {root}",
                                          "pass another --runs, or wait for the other report to finish"):
        results, status = run_stages(stages(root, args.quick, args.fresh, verbose=0 if args.quiet else 2),
                                     args.fresh, args.reuse_only, timings_path=root / "report_timings.json",
                                     reference=None if args.quick else REFERENCE_TIMINGS)
        report = write_report(results, status, out, args.quick, time.perf_counter() - start)
    failed = [k for k, v in status.items() if v.startswith("FAILED")]
    verdicts = {c.claim: c.verdict for c in claims.evaluate(results, missing=status)}
    not_evaluated = [k for k, v in verdicts.items() if v == claims.NOT_EVALUATED]
    print(json.dumps({"report": str(report), "stages": status, "failed": failed, "not_evaluated": not_evaluated}))
    return 1 if failed else 0


cli = entry_point(main, "python -m kerasdl.report")


if __name__ == "__main__":
    cli()
