"""The write-up's 21 claims: what each says, the evidence read from the sections' summaries, and
one verdict rule each. `kerasdl.report` renders them; nothing here reads a CSV or a table.

Every claim is a function of `r`, the dict of stage name -> summary.json contents, returning a
`Claim`, or None when the stages it needs are absent. `evaluate(r)` runs them all in order.

A verdict is one of four: "holds", "partly", "does not hold", or "not evaluated" when the
evidence is missing or unreadable (the evidence then says why). "not evaluated" is no verdict
on the claim: it is never counted as "does not hold".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

NOT_EVALUATED = "not evaluated"
VERDICTS = ("holds", "partly", "does not hold", NOT_EVALUATED)


@dataclass
class Claim:
    section: str
    claim: str
    evidence: str
    verdict: str


def verdict(holds: bool, partly: bool = False) -> str:
    return "holds" if holds else ("partly" if partly else "does not hold")


def needs(section: str, *stages: str):
    """A claim of `section`, evaluated only when every stage it reads is present."""
    def wrap(fn):
        def claim(r: dict) -> Claim | None:
            return fn(r) if all(s in r for s in stages) else None
        claim.section, claim.stages, claim.__name__ = section, stages, fn.__name__
        return claim
    return wrap


# ---- 1. backprop facts --------------------------------------------------------------------

@needs("1", "theory")
def sigmoid_derivative(r):
    sig = r["theory"]["sigmoid"]
    return Claim("1", "s'(x) = s(x)(1 - s(x)): the backward pass reuses the forward value.",
                 f"autodiff vs s(1-s) on {sig['grid'][2]} points in [{sig['grid'][0]:g}, {sig['grid'][1]:g}]: max abs "
                 f"error {sig['max_abs_error']['float64']:.2g} (float64); central differences vs s(1-s): "
                 f"{sig['max_abs_error_vs_finite_differences']:.2g}; max s' = {sig['max_derivative']:.4f}.",
                 verdict(sig["max_abs_error_vs_finite_differences"] < 1e-8 and sig["max_abs_error"]["float64"] < 1e-12))


def _frozen(zero_init: dict) -> dict:
    return {k: (len(v["zeros"]["frozen"]), len(v["zeros"]["tensors"])) for k, v in zero_init.items()}


@needs("1", "theory")
def zero_init_never_learns(r):
    z = r["theory"]["zero_init"]
    toy, mlp, frozen = z["toy_cnn"], z["mlp"], _frozen(z)
    moved = ", ".join(mlp["zeros"]["moved"]) or "none"
    return Claim("1", "With every weight at 0 the ReLU units output 0, dL/dw = 0 and the weights never move.",
                 f"toy convnet: {frozen['toy_cnn'][0]}/{frozen['toy_cnn'][1]} tensors have gradient 0 at step 0 and "
                 f"never move (loss {toy['zeros']['initial_loss']:.4f} -> {toy['zeros']['final_loss']:.4f}). MNIST "
                 f"MLP: {frozen['mlp'][0]}/{frozen['mlp'][1]} frozen; moved: {moved} (the output bias sees no ReLU and "
                 f"learns the class frequencies; loss {mlp['zeros']['initial_loss']:.4f} -> "
                 f"{mlp['zeros']['final_loss']:.4f}).",
                 verdict(all(a == b for a, b in frozen.values()), any(a > 0 for a, _ in frozen.values())))


@needs("1", "theory")
def random_init_learns(r):
    z = r["theory"]["zero_init"]
    inits = ("zeros", "glorot_uniform", "he_normal")
    trains = all(z[k][i]["final_loss"] < 0.5 * z[k]["zeros"]["final_loss"] for k in ("toy_cnn", "mlp")
                 for i in inits[1:])
    return Claim("1", "Random (Glorot or He) initialisation fixes it.",
                 "final loss zero / Glorot / He: toy convnet "
                 + " / ".join(f"{z['toy_cnn'][i]['final_loss']:.4f}" for i in inits)
                 + "; MLP " + " / ".join(f"{z['mlp'][i]['final_loss']:.4f}" for i in inits) + ".",
                 verdict(trains))


@needs("1", "theory")
def shared_parameter_folds(r):
    s = r["theory"].get("shared_parameter")
    if s is None:  # a summary from before this measurement
        return None
    fold, acc, c = s["fold"], s["accuracy"], s["contrast"]
    exact = all(check["exact"] for checks in fold.values() for check in checks)
    worst = {k: (max(x["max_abs_diff_float32"] for x in v), max(x["max_abs_diff_float64"] for x in v),
                 sum(x["prediction_mismatches"] for x in v)) for k, v in fold.items()}
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    noise = max(max(acc["relu"]) - min(acc["relu"]), 0.002)  # the plain MLP's seed range, at least 0.2 points
    gap = max(abs(mean[k] - mean["relu"]) for k in ("scale", "threshold"))
    leaky = min(c["fits"]["leaky"], key=lambda f: f["mse"])
    relu_best = min(f["mse"] for f in c["fits"]["relu"])
    bound = c["relu_mse_lower_bound"]
    found = sum(f["mse"] < 1e-4 for f in c["fits"]["leaky"])
    contrast = leaky["mse"] < 0.01 * bound and relu_best >= 0.99 * bound
    accs = "; ".join(f"{k} {' / '.join(format(a, '.4f') for a in v)}" for k, v in acc.items())
    return Claim("1", "A learned activation parameter shared by all the units of a layer (a common scale a in "
                      "relu(a z), a common threshold t in relu(z - t)) folds into the affine maps: the layer is a "
                      "plain ReLU one, no expressive power gained; a shared leaky slope does not fold, and adds some.",
                 f"fold on {fold['scale'][0]['images']} test images, worst of {len(fold['scale'])} trained MLPs: "
                 f"a into the next kernel max abs diff {worst['scale'][0]:.2g} (float32), {worst['scale'][1]:.2g} (float64), "
                 f"{worst['scale'][2]} predictions differ; t into the bias {worst['threshold'][0]:.2g}, "
                 f"{worst['threshold'][1]:.2g}, {worst['threshold'][2]}. Test accuracy by seed: {accs} (largest "
                 f"mean gap {gap * 100:.2f} points; allowed {noise * 100:.2f}: plain ReLU's seed range, at least 0.2). "
                 f"One hidden unit on abs(x), [-1, 1]: shared leaky MSE {leaky['mse']:.2g} (alpha {leaky['alpha']:.3f}; "
                 f"{found} of "
                 f"{len(c['fits']['leaky'])} seeds below 1e-4), ReLU {relu_best:.3g} >= the monotone bound "
                 f"{bound:.3g}; alpha = 1 is the identity on [-{c['identity']['span']:g}, {c['identity']['span']:g}] "
                 f"(max abs residual {c['identity']['max_abs_residual']:.2g}).",
                 verdict(exact and gap <= noise + 1e-9 and contrast, exact))  # 1e-9: float rounding of equal gaps


# ---- 2.4 toy convnet vs linear ------------------------------------------------------------

def _floor_ratio(res: dict, fn: str, model: str) -> float:
    return res[fn][model]["median"] / res[fn]["noise_floor"]


@needs("2.4", "toy")
def linear_fits_linear(r):
    res = r["toy"]["results"]
    if "f0" not in res:
        return None
    return Claim("2.4", "The linear model fits the linear function f0 to the noise floor.",
                 f"linear on f0: median test MSE {res['f0']['toy_linear']['median']:.4g}, noise floor "
                 f"{res['f0']['noise_floor']:.4g}.", verdict(_floor_ratio(res, "f0", "toy_linear") < 1.5))


@needs("2.4", "toy")
def linear_fails_nonlinear(r):
    res = r["toy"]["results"]
    nonlinear = [fn for fn in res if fn != "f0"]
    if not nonlinear:
        return None
    fails = all(_floor_ratio(res, fn, "toy_linear") > 10 for fn in nonlinear)
    # "every seed ends at the same optimum": the seeds' final test MSEs agree to within 10%
    same_optimum = all(res[fn]["toy_linear"]["max"] <= 1.1 * res[fn]["toy_linear"]["min"] for fn in nonlinear)
    return Claim("2.4", "The linear model cannot learn max(x) or log-sum-exp(xW), and (convex) every seed ends at "
                 "the same optimum.",
                 "linear: " + "; ".join(f"{fn} median {res[fn]['toy_linear']['median']:.3g} (seeds "
                                        f"{res[fn]['toy_linear']['min']:.3g}-{res[fn]['toy_linear']['max']:.3g})"
                                        for fn in nonlinear) + ".",
                 verdict(fails and same_optimum, fails))


@needs("2.4", "toy")
def convnet_learns_all(r):
    res = r["toy"]["results"]
    cells = lambda m: "; ".join(f"{fn} {res[fn][m]['median']:.3g} ({_floor_ratio(res, fn, m):.0f}x floor)"  # noqa: E731
                                for fn in res)
    fits = [fn for fn in res if _floor_ratio(res, fn, "toy_cnn") < 10]
    beats = [fn for fn in res if fn != "f0" and res[fn]["toy_cnn"]["median"] < res[fn]["toy_linear"]["median"]]
    return Claim("2.4", "The toy convnet learns all three functions.",
                 f"convnet median test MSE: {cells('toy_cnn')}. Linear: {cells('toy_linear')}. Fits to within 10x "
                 f"the floor: {', '.join(fits) or 'none'}; median beats linear on: {', '.join(beats) or 'none'}.",
                 verdict(len(fits) == len(res), bool(beats)))


@needs("2.4", "toy")
def convnet_depends_on_init(r):
    res = r["toy"]["results"]
    spread = {fn: res[fn]["toy_cnn"]["max"] / max(res[fn]["toy_cnn"]["min"], 1e-12) for fn in res}
    return Claim("2.4", "The convnet's results depend on the random initialisation.",
                 "max/min final test MSE over seeds, convnet: " + ", ".join(f"{fn} {s:.1f}x" for fn, s in spread.items())
                 + "; linear: " + ", ".join(f"{fn} {res[fn]['toy_linear']['max'] / res[fn]['toy_linear']['min']:.2f}x"
                                            for fn in res) + ".",
                 verdict(max(spread.values()) > 2))


@needs("2.4", "toy")
def numpy_backprop_correct(r):
    t = r["toy"]
    g = t["gradient_check"]
    sgd = (f"; NumPy-only SGD on f1 reaches median test MSE {t['numpy_sgd_f1']['median']:.3g} (Keras: "
           f"{t['results']['f1']['toy_cnn']['median']:.3g})." if t.get("numpy_sgd_f1") and "f1" in t["results"] else ".")
    return Claim("2.4", "The hand-written NumPy backprop of the toy convnet is correct.",
                 f"max relative error vs tf.GradientTape {g['max_rel_error_vs_tensorflow']:.2g} (float32), vs central "
                 f"finite differences {g['max_rel_error_vs_finite_differences']:.2g}" + sgd,
                 verdict(g["max_rel_error_vs_tensorflow"] < 1e-4 and g["max_rel_error_vs_finite_differences"] < 1e-6))


# ---- 2.5 MNIST classifiers ----------------------------------------------------------------

def _accuracy_claim(name: str, floor: float, text: str):
    @needs("2.5", name)
    def claim(r):
        s = r[name]
        return Claim("2.5", text, f"{name}: test accuracy {s['test_accuracy']:.4f} after {s['epochs']} epochs "
                                  f"({s['train_seconds']:.0f} s training, {s['train_images']} images).",
                     verdict(s["test_accuracy"] >= floor, s["test_accuracy"] >= floor - 0.005))
    claim.__name__ = f"{name}_accuracy"
    return claim


linear_accuracy = _accuracy_claim("linear", 0.92, "Softmax regression reaches about 92% test accuracy.")
mlp_accuracy = _accuracy_claim("mlp", 0.98, "A one-hidden-layer ReLU MLP reaches 98%.")
cnn_accuracy = _accuracy_claim("cnn", 0.992, "The convnet with max-pooling and dropout reaches 99.2% or more.")


@needs("2.5", "mlp", "mlp_sgd")
def adam_vs_sgd(r):
    a, s = r["mlp"]["test_accuracy"], r["mlp_sgd"]["test_accuracy"]
    return Claim("2.5", "Adam trains the MLP at least as well as SGD with momentum.",
                 f"test accuracy Adam (lr {r['mlp']['config']['lr']:g}) {a:.4f} vs SGD+momentum "
                 f"{r['mlp_sgd']['config']['momentum']:g} (lr {r['mlp_sgd']['config']['lr']:g}) {s:.4f}.",
                 verdict(a >= s - 0.001, a >= s - 0.005))


@needs("2.5", "mlp", "mlp_sigmoid")
def relu_beats_sigmoid(r):
    a, s = r["mlp"]["test_accuracy"], r["mlp_sigmoid"]["test_accuracy"]
    return Claim("2.5", "ReLU hidden units beat sigmoid ones.", f"test accuracy ReLU {a:.4f} vs sigmoid {s:.4f}.",
                 verdict(a > s, a >= s - 0.001))


# ---- 2.5.4 learning rate and depth --------------------------------------------------------

def _trials_by_lr(r) -> dict:
    return {t["hyperparameters"]["lr"]: t for t in r["tuning_lr"]["trials"]}


def _lr_trial(r, rate: float) -> tuple[dict | None, list]:
    """The learning-rate trial at `rate` and its validation-accuracy curve, or (None, [])."""
    t = _trials_by_lr(r).get(rate)
    return (t, t["val_accuracy_per_epoch"]) if t else (None, [])


def _best_epoch(trial: dict) -> int:
    curve = trial["val_accuracy_per_epoch"]
    return 1 + max(range(len(curve)), key=curve.__getitem__)


@needs("2.5.4", "tuning_lr")
def low_lr_keeps_improving(r):
    low = [t for rate, t in _trials_by_lr(r).items() if rate <= 1e-3]
    if not low:
        return None
    late = [t for t in low if _best_epoch(t) >= 0.7 * t["epochs_run"]]
    return Claim("2.5.4", "Low learning rates keep improving over the epochs.",
                 "epoch of best validation accuracy / epochs run: "
                 + ", ".join(f"lr {t['hyperparameters']['lr']:g}: {_best_epoch(t)}/{t['epochs_run']}" for t in low) + ".",
                 verdict(len(late) == len(low), bool(late)))


@needs("2.5.4", "tuning_lr")
def lr_1_collapses(r):
    t, curve = _lr_trial(r, 1.0)
    if t is None:
        return None
    peak, final = max(curve), curve[-1]
    # "Collapses after a while" needs a rate that learned first: a peak well above chance (0.1).
    learned = peak >= LEARNED
    collapsed = learned and (final < 0.5 * peak or t["diverged"])
    fell = learned and final < peak - 0.05
    story = ("it learned, then collapsed" if collapsed else "it learned, then fell, but not by half" if fell else
             "it learned and did not collapse" if learned else
             f"it never learned (peak below {LEARNED:g}, chance is 0.1): nothing to collapse from")
    return Claim("2.5.4", "Learning rate 1 collapses after a while.",
                 f"lr 1: best validation accuracy {peak:.3f} (epoch {_best_epoch(t)}), final {final:.3f} after "
                 f"{t['epochs_run']} epochs{', diverged (NaN loss)' if t['diverged'] else ''}"
                 f"{', stopped at chance' if t.get('stopped_at_chance') else ''}: {story}."
                 + _sgd_evidence(r),
                 verdict(collapsed, fell))


LEARNED = 0.5  # validation accuracy a rate must reach to count as having learned (chance: 0.1)


def _sgd_evidence(r) -> str:
    """What the SGD learning-rate stage saw at rate 1 (the write-up's optimizer question), if it ran."""
    s = r.get("tuning_lr_sgd")
    if not s:
        return ""
    parts = []
    for run in s.get("runs", []):
        curve = run["val_accuracy_per_epoch"]
        peak = max(curve)
        shape = ("learns, then collapses" if peak >= LEARNED and (curve[-1] < 0.5 * peak or run["diverged"])
                 else "learns and holds" if peak >= LEARNED else "never learns")
        parts.append(f"{run['optimizer']} lr {run['lr']:g}: peak {peak:.3f} at epoch "
                     f"{1 + curve.index(peak)}, final {curve[-1]:.3f}{' (diverged)' if run['diverged'] else ''}, "
                     f"{shape}")
    return " SGD stage (" + f"{s.get('train_images')} images, {s.get('epochs')} epochs): " + "; ".join(parts) + "."


@needs("2.5.4", "tuning_lr")
def lr_10_at_chance(r):
    t, curve = _lr_trial(r, 10.0)
    if t is None:
        return None
    return Claim("2.5.4", "Learning rate 10 stays at chance from the start.",
                 f"lr 10: validation accuracy per epoch {', '.join(format(v, '.3f') for v in curve[:5])}"
                 f"{' ...' if len(curve) > 5 else ''}; {'diverged (NaN loss), ' if t['diverged'] else ''}"
                 f"{'stopped at chance after ' if t.get('stopped_at_chance') else ''}{t['epochs_run']} epochs run.",
                 verdict(all(v < 0.2 for v in curve)))


@needs("2.5.4", "tuning_depth")
def depth_costs_more_than_it_gains(r):
    rows = sorted(r["tuning_depth"]["trials"], key=lambda t: t["hyperparameters"]["hidden_layers"])
    base, deeper = rows[0], rows[1:]
    if not deeper:
        return None
    gain = max(t["final"]["test_accuracy"] for t in deeper) - base["final"]["test_accuracy"]
    slow = deeper[-1]["seconds_per_epoch"] / base["seconds_per_epoch"]
    return Claim("2.5.4", "Deeper MLPs gain little accuracy for much longer runs.",
                 "test accuracy / seconds per epoch by depth: "
                 + ", ".join(f"{t['hyperparameters']['hidden_layers']}: {t['final']['test_accuracy']:.4f} / "
                             f"{t['seconds_per_epoch']:.2f} s" for t in rows)
                 + f". Best gain over depth 1: {gain * 100:+.2f} points; deepest is {slow:.1f}x slower per epoch.",
                 verdict(gain < 0.005 and slow > 1.3, gain < 0.005 or slow > 1.3))


# ---- 2.6 autoencoder vs PCA ---------------------------------------------------------------

@needs("2.6", "autoencoder")
def autoencoder_separates_digits(r):
    m = r["autoencoder"]["methods"]
    if "deep" not in m:
        return None
    deep, pca = m["deep"], m["pca"]
    return Claim("2.6", "The autoencoder's 2-D codes separate the digits better than PCA(2)'s.",
                 f"5-NN accuracy on test codes: deep AE {deep['knn_accuracy']:.4f} vs PCA {pca['knn_accuracy']:.4f}; "
                 f"silhouette {deep['silhouette']:.3f} vs {pca['silhouette']:.3f}.",
                 verdict(deep["knn_accuracy"] > pca["knn_accuracy"] + 0.05 and deep["silhouette"] > pca["silhouette"],
                         deep["knn_accuracy"] > pca["knn_accuracy"]))


@needs("2.6", "autoencoder")
def autoencoder_reconstructs_better(r):
    a = r["autoencoder"]
    if "deep" not in a["methods"]:
        return None
    ratio = a["mse_ratio_to_pca"]["deep"]
    return Claim("2.6", "The autoencoder reconstructs better than PCA(2) (target: MSE at most 0.75x PCA's).",
                 f"test reconstruction MSE: deep AE {a['methods']['deep']['reconstruction_mse']:.4f}, PCA(2) "
                 f"{a['methods']['pca']['reconstruction_mse']:.4f} (ratio {ratio:.2f}).",
                 verdict(ratio <= 0.75, ratio < 1))


@needs("2.6", "autoencoder")
def shallow_autoencoder_is_worse(r):
    m = r["autoencoder"]["methods"]
    if "shallow" not in m or "deep" not in m:
        return None
    return Claim("2.6", "The shallow 784-2-784 autoencoder trains, but badly; intermediate layers fix it.",
                 f"test MSE shallow {m['shallow']['reconstruction_mse']:.4f} vs deep {m['deep']['reconstruction_mse']:.4f}"
                 f" vs PCA {m['pca']['reconstruction_mse']:.4f}; 5-NN shallow {m['shallow']['knn_accuracy']:.4f}.",
                 verdict(m["shallow"]["reconstruction_mse"] > 1.2 * m["deep"]["reconstruction_mse"]))


CLAIMS: list[Callable[[dict], Claim | None]] = [
    shared_parameter_folds, sigmoid_derivative, zero_init_never_learns, random_init_learns,
    linear_fits_linear, linear_fails_nonlinear, convnet_learns_all, convnet_depends_on_init, numpy_backprop_correct,
    linear_accuracy, mlp_accuracy, cnn_accuracy, adam_vs_sgd, relu_beats_sigmoid,
    low_lr_keeps_improving, lr_1_collapses, lr_10_at_chance, depth_costs_more_than_it_gains,
    autoencoder_separates_digits, autoencoder_reconstructs_better, shallow_autoencoder_is_worse,
]


def not_evaluated(fn, why: str) -> Claim:
    """The fourth verdict: `fn`'s claim could not be judged, and why."""
    return Claim(fn.section, fn.__name__.replace("_", " "), f"could not be evaluated: {why}", NOT_EVALUATED)


def evaluate(r: dict, section: str | None = None, missing: dict[str, str] | None = None) -> list[Claim]:
    """Every claim whose stages are present (in `section` only, if given). A claim that cannot be
    read from a malformed summary is "not evaluated", with why, instead of sinking the others; so
    is one whose stage is in `missing` (stage -> why it is missing, e.g. "FAILED: ...")."""
    out = []
    for fn in CLAIMS:
        try:
            claim = fn(r)
        except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError) as exc:
            claim = not_evaluated(fn, f"the evidence is unreadable ({exc.__class__.__name__}: {exc})")
        if claim is None and missing:
            absent = [s for s in getattr(fn, "stages", ()) if s not in r and s in missing]
            if absent:
                claim = not_evaluated(fn, "; ".join(f"stage {s}: {missing[s]}" for s in absent))
        if claim is not None and (section is None or claim.section == section):
            out.append(claim)
    return out
