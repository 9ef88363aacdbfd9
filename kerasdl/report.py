"""The whole write-up from one command: run every section (or reuse its results in runs/) and
write reports/REPORT.md, organised like the write-up, with a verdict for every claim.

    python -m kerasdl.report [--quick] [--fresh] [--out reports]

Every number in the report is read from the sections' summary.json files; none is typed in.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kerasdl.errors import run_cli, writable_dir

log = logging.getLogger("kerasdl.report")

VERDICTS = ("holds", "partly", "does not hold")


@dataclass
class Stage:
    """One section run: where its summary lives and how to produce it."""

    name: str
    summary: Path
    run: Callable[[], dict]
    config: object = None  # the section's config object, where the stage has one


def stages(root: Path, quick: bool, fresh: bool = False) -> list[Stage]:
    """Every section with its defaults, or with small budgets under --quick.

    `fresh` also makes the classifiers start over instead of resuming a backup, and tells the
    Keras Tuner searches to discard their finished trials (without it they would reload them
    from their oracle state and rerun nothing).
    """
    from kerasdl import autoencoder, mnist, theory, toy

    def classifier(model, name=None, **hp):
        quick_hp = dict(limit=1500, epochs=1) if quick else {}
        cfg = mnist.config_for(model, name=name, run_dir=root / (name or model), export_dir=root / "saved_models",
                               restart=fresh or None, **{**hp, **quick_hp})
        return lambda: mnist.train(cfg, verbose=0), cfg

    def tuner(kind):
        from tuning.search import SearchConfig, search

        quick_hp = dict(limit=1000, epochs=2, units=32, lrs=(1e-3, 1.0, 10.0), depths=(1, 2)) if quick else {}
        defaults = {"epochs": 50 if kind == "lr" else 20}
        cfg = SearchConfig(kind=kind, run_root=root / "tuning", export_dir=root / "saved_models", overwrite=fresh,
                           **{**defaults, **quick_hp})
        return lambda: search(cfg), cfg

    theory_cfg = theory.TheoryConfig(run_dir=root / "theory",
                                     **(dict(steps=8, mlp_images=300, mlp_units=16) if quick else {}))
    toy_cfg = toy.ToyConfig(run_dir=root / "toy", **(dict(seeds=2, iterations=100) if quick else {}))
    ae_cfg = autoencoder.AutoencoderConfig(run_dir=root / "autoencoder", export_dir=root / "saved_models",
                                           **(dict(limit=1500, epochs=1) if quick else {}))
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
        Stage("tuning_depth", root / "tuning" / "depth" / "summary.json", *tuner("depth")),
        Stage("autoencoder", root / "autoencoder" / "summary.json", lambda: autoencoder.run(ae_cfg), ae_cfg),
    ]


def run_stages(all_stages: list[Stage], fresh: bool) -> tuple[dict, dict]:
    """Run or reuse each stage; a failing stage is recorded and the others still run."""
    results, status = {}, {}
    for i, stage in enumerate(all_stages, 1):
        if stage.summary.exists() and not fresh:
            results[stage.name] = json.loads(stage.summary.read_text())
            status[stage.name] = "reused"
            log.info("[%d/%d] %s: reusing %s", i, len(all_stages), stage.name, stage.summary)
            continue
        log.info("[%d/%d] %s: running", i, len(all_stages), stage.name)
        start = time.perf_counter()
        try:
            results[stage.name] = stage.run()
            status[stage.name] = f"ran in {time.perf_counter() - start:.0f} s"
        except Exception as exc:  # a stage's failure is reported, not fatal
            status[stage.name] = f"FAILED: {exc.__class__.__name__}: {exc}"
            log.error("[%d/%d] %s failed:\n%s", i, len(all_stages), stage.name, traceback.format_exc())
    return results, status


# ---- claims ------------------------------------------------------------------------------


def verdict(holds: bool, partly: bool = False) -> str:
    return "holds" if holds else ("partly" if partly else "does not hold")


def section_1(r: dict) -> list[tuple[str, str, str]]:
    sig = r["sigmoid"]
    toy, mlp = r["zero_init"]["toy_cnn"], r["zero_init"]["mlp"]
    zero_frozen = {k: (len(v["zeros"]["frozen"]), len(v["zeros"]["tensors"])) for k, v in r["zero_init"].items()}
    all_frozen = all(a == b for a, b in zero_frozen.values())
    some_frozen = any(a > 0 for a, _ in zero_frozen.values())
    random_trains = all(v[i]["final_loss"] < 0.5 * v["zeros"]["final_loss"] for v in (toy, mlp)
                        for i in ("glorot_uniform", "he_normal"))
    moved = ", ".join(mlp["zeros"]["moved"]) or "none"
    return [
        ("s'(x) = s(x)(1 - s(x)): the backward pass reuses the forward value.",
         f"autodiff vs s(1-s) on {sig['grid'][2]} points in [{sig['grid'][0]:g}, {sig['grid'][1]:g}]: max abs error "
         f"{sig['max_abs_error']['float64']:.2g} (float64); central differences vs s(1-s): "
         f"{sig['max_abs_error_vs_finite_differences']:.2g}; max s' = {sig['max_derivative']:.4f}.",
         verdict(sig["max_abs_error_vs_finite_differences"] < 1e-8 and sig["max_abs_error"]["float64"] < 1e-12)),
        ("With every weight at 0 the ReLU units output 0, dL/dw = 0 and the weights never move.",
         f"toy convnet: {zero_frozen['toy_cnn'][0]}/{zero_frozen['toy_cnn'][1]} tensors have gradient 0 at step 0 "
         f"and never move (loss {toy['zeros']['initial_loss']:.4f} -> {toy['zeros']['final_loss']:.4f}). "
         f"MNIST MLP: {zero_frozen['mlp'][0]}/{zero_frozen['mlp'][1]} frozen; moved: {moved} (the output bias sees "
         f"no ReLU and learns the class frequencies; loss {mlp['zeros']['initial_loss']:.4f} -> "
         f"{mlp['zeros']['final_loss']:.4f}).",
         verdict(all_frozen, some_frozen)),
        ("Random (Glorot or He) initialisation fixes it.",
         "final loss zero / Glorot / He: toy convnet "
         + " / ".join(f"{toy[i]['final_loss']:.4f}" for i in ("zeros", "glorot_uniform", "he_normal"))
         + "; MLP " + " / ".join(f"{mlp[i]['final_loss']:.4f}" for i in ("zeros", "glorot_uniform", "he_normal"))
         + ".", verdict(random_trains)),
    ]


def section_2_4(r: dict) -> list[tuple[str, str, str]]:
    res = r["results"]
    ratio = lambda fn, m: res[fn][m]["median"] / res[fn]["noise_floor"]  # noqa: E731
    fns = list(res)
    cells = lambda m: "; ".join(f"{fn} {res[fn][m]['median']:.3g} ({ratio(fn, m):.0f}x floor)" for fn in fns)  # noqa: E731
    claims = []
    if "f0" in res:
        claims.append(("The linear model fits the linear function f0 to the noise floor.",
                       f"linear on f0: median test MSE {res['f0']['toy_linear']['median']:.4g}, noise floor "
                       f"{res['f0']['noise_floor']:.4g}.", verdict(ratio("f0", "toy_linear") < 1.5)))
    nonlinear = [fn for fn in fns if fn != "f0"]
    if nonlinear:
        claims.append(("The linear model cannot learn max(x) or log-sum-exp(xW), and (convex) every seed ends at the "
                       "same optimum.",
                       "linear: " + "; ".join(f"{fn} median {res[fn]['toy_linear']['median']:.3g} "
                                             f"(seeds {res[fn]['toy_linear']['min']:.3g}-{res[fn]['toy_linear']['max']:.3g})"
                                             for fn in nonlinear) + ".",
                       verdict(all(ratio(fn, "toy_linear") > 10 for fn in nonlinear))))
    fits = [fn for fn in fns if ratio(fn, "toy_cnn") < 10]
    beats = [fn for fn in nonlinear if res[fn]["toy_cnn"]["median"] < res[fn]["toy_linear"]["median"]]
    claims.append(("The toy convnet learns all three functions.",
                   f"convnet median test MSE: {cells('toy_cnn')}. Linear: {cells('toy_linear')}. Fits to within 10x "
                   f"the floor: {', '.join(fits) or 'none'}; median beats linear on: {', '.join(beats) or 'none'}.",
                   verdict(len(fits) == len(fns), bool(beats))))
    spread = {fn: res[fn]["toy_cnn"]["max"] / max(res[fn]["toy_cnn"]["min"], 1e-12) for fn in fns}
    claims.append(("The convnet's results depend on the random initialisation.",
                   "max/min final test MSE over seeds, convnet: " + ", ".join(f"{fn} {s:.1f}x" for fn, s in spread.items())
                   + "; linear: " + ", ".join(f"{fn} {res[fn]['toy_linear']['max'] / res[fn]['toy_linear']['min']:.2f}x"
                                              for fn in fns) + ".",
                   verdict(max(spread.values()) > 2)))
    g = r["gradient_check"]
    claims.append(("The hand-written NumPy backprop of the toy convnet is correct.",
                   f"max relative error vs tf.GradientTape {g['max_rel_error_vs_tensorflow']:.2g} (float32), vs central "
                   f"finite differences {g['max_rel_error_vs_finite_differences']:.2g}"
                   + (f"; NumPy-only SGD on f1 reaches median test MSE {r['numpy_sgd_f1']['median']:.3g} (Keras: "
                      f"{res['f1']['toy_cnn']['median']:.3g})." if r.get("numpy_sgd_f1") and "f1" in res else "."),
                   verdict(g["max_rel_error_vs_tensorflow"] < 1e-4 and g["max_rel_error_vs_finite_differences"] < 1e-6)))
    return claims


def section_2_5(r: dict) -> list[tuple[str, str, str]]:
    claims = []
    for name, floor, text in (("linear", 0.92, "Softmax regression reaches about 92% test accuracy."),
                              ("mlp", 0.98, "A one-hidden-layer ReLU MLP reaches 98%."),
                              ("cnn", 0.992, "The convnet with max-pooling and dropout reaches 99.2% or more.")):
        if name in r:
            s = r[name]
            claims.append((text, f"{name}: test accuracy {s['test_accuracy']:.4f} after {s['epochs']} epochs "
                                 f"({s['train_seconds']:.0f} s training, {s['train_images']} images).",
                           verdict(s["test_accuracy"] >= floor, s["test_accuracy"] >= floor - 0.005)))
    if "mlp" in r and "mlp_sgd" in r:
        a, s = r["mlp"]["test_accuracy"], r["mlp_sgd"]["test_accuracy"]
        claims.append(("Adam trains the MLP at least as well as SGD with momentum.",
                       f"test accuracy Adam (lr {r['mlp']['config']['lr']:g}) {a:.4f} vs SGD+momentum 0.9 "
                       f"(lr {r['mlp_sgd']['config']['lr']:g}) {s:.4f}.", verdict(a >= s - 0.001, a >= s - 0.005)))
    if "mlp" in r and "mlp_sigmoid" in r:
        a, s = r["mlp"]["test_accuracy"], r["mlp_sigmoid"]["test_accuracy"]
        claims.append(("ReLU hidden units beat sigmoid ones.", f"test accuracy ReLU {a:.4f} vs sigmoid {s:.4f}.",
                       verdict(a > s, a >= s - 0.001)))
    return claims


def section_2_5_4(lr: dict | None, depth: dict | None) -> list[tuple[str, str, str]]:
    claims = []
    if lr:
        trials = {t["hyperparameters"]["lr"]: t for t in lr["trials"]}
        low = [t for rate, t in trials.items() if rate <= 1e-3]
        if low:
            late = [t for t in low if _best_epoch(t) >= 0.7 * t["epochs_run"]]
            claims.append(("Low learning rates keep improving over the epochs.",
                           "epoch of best validation accuracy / epochs run: "
                           + ", ".join(f"lr {t['hyperparameters']['lr']:g}: {_best_epoch(t)}/{t['epochs_run']}" for t in low)
                           + ".", verdict(len(late) == len(low), bool(late))))
        if 1.0 in trials:
            t, hist = trials[1.0], _history(trials[1.0])
            peak = max(h["val_accuracy"] for h in hist)
            final = hist[-1]["val_accuracy"]
            claims.append(("Learning rate 1 collapses after a while.",
                           f"lr 1: best validation accuracy {peak:.3f}, final {final:.3f} after {t['epochs_run']} epochs"
                           f"{', diverged (NaN loss)' if t['diverged'] else ''}.",
                           verdict(peak > 0.5 and (final < 0.5 * peak or t["diverged"]), final < peak - 0.02)))
        if 10.0 in trials:
            t, hist = trials[10.0], _history(trials[10.0])
            per_epoch = ", ".join(format(h["val_accuracy"], ".3f") for h in hist[:5])
            claims.append(("Learning rate 10 stays at chance from the start.",
                           f"lr 10: validation accuracy per epoch {per_epoch}"
                           f"{' ...' if len(hist) > 5 else ''}; {'diverged (NaN loss), ' if t['diverged'] else ''}"
                           f"{t['epochs_run']} epochs run.",
                           verdict(all(h["val_accuracy"] < 0.2 for h in hist))))
    if depth:
        rows = sorted(depth["trials"], key=lambda t: t["hyperparameters"]["hidden_layers"])
        base, deeper = rows[0], rows[1:]
        if deeper:
            gain = max(t["final"]["test_accuracy"] for t in deeper) - base["final"]["test_accuracy"]
            slow = deeper[-1]["seconds_per_epoch"] / base["seconds_per_epoch"]
            claims.append(("Deeper MLPs gain little accuracy for much longer runs.",
                           "test accuracy / seconds per epoch by depth: "
                           + ", ".join(f"{t['hyperparameters']['hidden_layers']}: {t['final']['test_accuracy']:.4f} / "
                                       f"{t['seconds_per_epoch']:.2f} s" for t in rows)
                           + f". Best gain over depth 1: {gain * 100:+.2f} points; deepest is {slow:.1f}x slower per epoch.",
                           verdict(gain < 0.005 and slow > 1.3, gain < 0.005 or slow > 1.3)))
    return claims


def section_2_6(r: dict) -> list[tuple[str, str, str]]:
    m = r["methods"]
    claims = []
    if "deep" in m:
        claims.append(("The autoencoder's 2-D codes separate the digits better than PCA(2)'s.",
                       f"5-NN accuracy on test codes: deep AE {m['deep']['knn_accuracy']:.4f} vs PCA "
                       f"{m['pca']['knn_accuracy']:.4f}; silhouette {m['deep']['silhouette']:.3f} vs "
                       f"{m['pca']['silhouette']:.3f}.",
                       verdict(m["deep"]["knn_accuracy"] > m["pca"]["knn_accuracy"] + 0.05
                               and m["deep"]["silhouette"] > m["pca"]["silhouette"],
                               m["deep"]["knn_accuracy"] > m["pca"]["knn_accuracy"])))
        claims.append(("The autoencoder reconstructs better than PCA(2) (target: MSE at most 0.75x PCA's).",
                       f"test reconstruction MSE: deep AE {m['deep']['reconstruction_mse']:.4f}, PCA(2) "
                       f"{m['pca']['reconstruction_mse']:.4f} (ratio {r['mse_ratio_to_pca']['deep']:.2f}).",
                       verdict(r["mse_ratio_to_pca"]["deep"] <= 0.75, r["mse_ratio_to_pca"]["deep"] < 1)))
    if "shallow" in m and "deep" in m:
        claims.append(("The shallow 784-2-784 autoencoder trains, but badly; intermediate layers fix it.",
                       f"test MSE shallow {m['shallow']['reconstruction_mse']:.4f} vs deep "
                       f"{m['deep']['reconstruction_mse']:.4f} vs PCA {m['pca']['reconstruction_mse']:.4f}; 5-NN "
                       f"shallow {m['shallow']['knn_accuracy']:.4f}.",
                       verdict(m["shallow"]["reconstruction_mse"] > 1.2 * m["deep"]["reconstruction_mse"])))
    return claims


def _history(trial: dict) -> list[dict]:
    from kerasdl.training import read_history

    return read_history(Path(trial["history_csv"]))


def _best_epoch(trial: dict) -> int:
    hist = _history(trial)
    return 1 + max(range(len(hist)), key=lambda i: hist[i]["val_accuracy"])


# ---- the document ------------------------------------------------------------------------


def figure(path: str | None, out: Path, caption: str) -> str:
    if not path or not Path(path).exists():
        return f"*(figure missing: {path})*\n"
    return f"![{caption}]({os.path.relpath(Path(path).resolve(), out.resolve())})\n"


def claims_table(claims: list[tuple[str, str, str]]) -> str:
    rows = ["| claim | measured evidence | verdict |", "|---|---|---|"]
    rows += [f"| {c} | {e} | **{v}** |" for c, e, v in claims]
    return "\n".join(rows) + "\n"


def write_report(results: dict, status: dict, out: Path, quick: bool, seconds: float) -> Path:
    r = results
    parts = ["# kerasdl report: the write-up, measured\n",
             f"Generated by `python -m kerasdl.report{' --quick' if quick else ''}` in {seconds:.0f} s. "
             + ("**Quick mode: tiny budgets, numbers are not the write-up's.** " if quick else "")
             + "Every number below is read from the sections' summary.json files.\n",
             "## Stages\n", "| stage | status |\n|---|---|\n"
             + "".join(f"| {name} | {state} |\n" for name, state in status.items())]

    def section(title, key, build, figures=()):
        parts.append(f"\n## {title}\n")
        if any(k not in r for k in ([key] if isinstance(key, str) else key)):
            missing = [k for k in ([key] if isinstance(key, str) else key) if k not in r]
            parts.append(f"*Not available: stage {', '.join(missing)} {'failed' if missing else ''}.*\n")
            return
        try:
            parts.append(claims_table(build()))
        except Exception as exc:  # a malformed summary must not sink the whole report
            parts.append(f"*Could not evaluate the claims: {exc.__class__.__name__}: {exc}*\n")
        for path, caption in figures:
            parts.append(figure(path, out, caption))

    section("1. Backprop facts", "theory", lambda: section_1(r["theory"]),
            [(r.get("theory", {}).get("figures", {}).get("sigmoid"), "sigmoid and derivative"),
             (r.get("theory", {}).get("figures", {}).get("init_loss"), "zero vs Glorot vs He")])
    section("2.4 Toy convnet vs linear model", "toy", lambda: section_2_4(r["toy"]),
            [(r.get("toy", {}).get("figure"), "test MSE vs iteration")])
    if "toy" in r and Path(r["toy"]["table"]).exists():
        parts.append("\n" + Path(r["toy"]["table"]).read_text())
    section("2.5.1-2.5.3 MNIST classifiers", ["linear", "mlp", "cnn"],
            lambda: section_2_5({k: r[k] for k in ("linear", "mlp", "cnn", "mlp_sgd", "mlp_sigmoid") if k in r}),
            [(r.get(k, {}).get("history_plot"), f"{k} history") for k in ("linear", "mlp", "cnn", "mlp_sgd",
                                                                             "mlp_sigmoid")])
    section("2.5.4 Learning rate and depth (Keras Tuner)", ["tuning_lr", "tuning_depth"],
            lambda: section_2_5_4(r.get("tuning_lr"), r.get("tuning_depth")),
            [(r.get("tuning_lr", {}).get("figures", {}).get("curves"), "curves by learning rate"),
             (r.get("tuning_depth", {}).get("figures", {}).get("depth"), "depth trade-off")])
    for key in ("tuning_lr", "tuning_depth"):
        if key in r and Path(r[key]["table_md"]).exists():
            parts.append(f"\n{key.replace('_', ' ')} results (ranked by validation accuracy):\n\n"
                         + Path(r[key]["table_md"]).read_text())
    section("2.6 Autoencoder vs PCA(2)", "autoencoder", lambda: section_2_6(r["autoencoder"]),
            [(r.get("autoencoder", {}).get("figures", {}).get("latent"), "2-D codes"),
             (r.get("autoencoder", {}).get("figures", {}).get("reconstructions"), "reconstructions")])
    if "autoencoder" in r and Path(r["autoencoder"]["table"]).exists():
        parts.append("\n" + Path(r["autoencoder"]["table"]).read_text())

    report = out / "REPORT.md"
    tmp = out / ".REPORT.md.tmp"
    tmp.write_text("\n".join(parts))
    os.replace(tmp, report)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m kerasdl.report",
                                description="Run every section (reusing results in runs/) and write reports/REPORT.md "
                                "with each claim of the write-up, its measured evidence and a verdict.")
    p.add_argument("--quick", action="store_true", help="small slices and few epochs (a few minutes); results go "
                   "to runs/quick/ so they never mix with full runs")
    p.add_argument("--fresh", action="store_true", help="rerun every stage even if its results exist")
    p.add_argument("--runs", type=Path, help="where the sections' results live (default runs/, or runs/quick/)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="where REPORT.md goes (default reports/)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    root = writable_dir(args.runs or (Path("runs/quick") if args.quick else Path("runs")), "--runs")
    out = writable_dir(args.out, "--out")
    start = time.perf_counter()
    results, status = run_stages(stages(root, args.quick, args.fresh), args.fresh)
    report = write_report(results, status, out, args.quick, time.perf_counter() - start)
    failed = [k for k, v in status.items() if v.startswith("FAILED")]
    print(json.dumps({"report": str(report), "stages": status, "failed": failed}))
    return 1 if failed else 0



def cli() -> None:
    """Console-script entry point: errors become one line and exit code 2."""
    sys.exit(run_cli(main, "python -m kerasdl.report"))


if __name__ == "__main__":
    cli()
