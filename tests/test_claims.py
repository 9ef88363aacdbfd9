"""kerasdl.claims: every claim of the write-up against hand-built summaries on both sides of its rule."""

from __future__ import annotations

import copy

import pytest

from kerasdl import claims


def shared_parameter(diff32=5e-7, diff64=1e-15, mismatches=0, shared_acc=(0.975, 0.976, 0.977), leaky_mse=1e-15,
                     relu_mse=0.058):
    def check():
        exact = diff32 <= 1e-5 and diff64 <= 1e-12 and mismatches == 0
        return {"images": 10000, "max_abs_diff_float32": diff32, "max_abs_diff_float64": diff64,
                "prediction_mismatches": mismatches, "exact": exact}
    return {"fold": {"scale": [check(), check()], "threshold": [check(), check()]},
            "accuracy": {"relu": [0.976, 0.977, 0.975], "scale": list(shared_acc), "threshold": [0.976, 0.975, 0.976]},
            "contrast": {"relu_mse_lower_bound": 0.0572, "identity": {"span": 1000.0, "max_abs_residual": 0.0},
                         "fits": {"leaky": [{"mse": 0.083, "alpha": 0.2}, {"mse": leaky_mse, "alpha": -1.0}],
                                  "relu": [{"mse": 0.083}, {"mse": relu_mse}]}}}


def theory(fd=1e-11, e64=1e-17, toy_frozen=2, mlp_frozen=4, zero_loss=1.0, random_loss=0.1, shared=None):
    def model(frozen, tensors):
        return {"zeros": {"frozen": [f"w{i}" for i in range(frozen)], "tensors": [f"w{i}" for i in range(tensors)],
                          "moved": [f"w{i}" for i in range(frozen, tensors)], "initial_loss": 1.0,
                          "final_loss": zero_loss},
                "glorot_uniform": {"final_loss": random_loss}, "he_normal": {"final_loss": random_loss}}
    return {"sigmoid": {"grid": [-8, 8, 1601], "max_abs_error": {"float64": e64},
                        "max_abs_error_vs_finite_differences": fd, "max_derivative": 0.25},
            "zero_init": {"toy_cnn": model(toy_frozen, 2), "mlp": model(mlp_frozen, 4)},
            "shared_parameter": shared or shared_parameter()}


def toy(f0_linear=0.011, nonlinear_linear=1.0, cnn=0.02, cnn_max=0.1, rel_tf=1e-6, rel_fd=1e-9, linear_spread=1.01):
    def fn(linear, cnn_median):
        return {"noise_floor": 0.01, "toy_linear": {"median": linear, "min": linear, "max": linear * linear_spread},
                "toy_cnn": {"median": cnn_median, "min": 0.9 * cnn_median, "max": cnn_max}}
    return {"results": {"f0": fn(f0_linear, cnn), "f1": fn(nonlinear_linear, cnn), "f2": fn(nonlinear_linear, cnn)},
            "gradient_check": {"max_rel_error_vs_tensorflow": rel_tf, "max_rel_error_vs_finite_differences": rel_fd},
            "numpy_sgd_f1": {"median": 0.03, "min": 0.02, "max": 0.05}}


def classifier(acc, lr=1e-3, momentum=0.0):
    return {"test_accuracy": acc, "epochs": 10, "train_seconds": 30.0, "train_images": 55000,
            "config": {"lr": lr, "momentum": momentum}}


def tuning_lr(low_curve=(0.9, 0.95, 0.97, 0.98), lr1=(0.6, 0.8, 0.3, 0.1), lr10=(0.1, 0.09, 0.11, 0.1)):
    def trial(lr, curve):
        return {"hyperparameters": {"lr": lr}, "val_accuracy_per_epoch": list(curve), "epochs_run": len(curve),
                "diverged": False}
    return {"trials": [trial(1e-3, low_curve), trial(1e-4, low_curve), trial(1.0, lr1), trial(10.0, lr10)]}


def tuning_depth(accs=(0.980, 0.981, 0.982), seconds=(1.0, 1.5, 2.0)):
    return {"trials": [{"hyperparameters": {"hidden_layers": d + 1}, "final": {"test_accuracy": a},
                        "seconds_per_epoch": s} for d, (a, s) in enumerate(zip(accs, seconds))]}


def autoencoder(deep_knn=0.7, pca_knn=0.4, deep_sil=0.1, pca_sil=-0.05, deep_mse=0.036, pca_mse=0.056, shallow_mse=0.06):
    return {"methods": {"deep": {"knn_accuracy": deep_knn, "silhouette": deep_sil, "reconstruction_mse": deep_mse},
                        "shallow": {"knn_accuracy": 0.3, "silhouette": -0.1, "reconstruction_mse": shallow_mse},
                        "pca": {"knn_accuracy": pca_knn, "silhouette": pca_sil, "reconstruction_mse": pca_mse}},
            "mse_ratio_to_pca": {"deep": deep_mse / pca_mse, "shallow": shallow_mse / pca_mse}}


GOOD = {"theory": theory(), "toy": toy(), "linear": classifier(0.925), "mlp": classifier(0.982),
        "cnn": classifier(0.993), "mlp_sgd": classifier(0.979, lr=0.01, momentum=0.9),
        "mlp_sigmoid": classifier(0.975), "tuning_lr": tuning_lr(), "tuning_depth": tuning_depth(),
        "autoencoder": autoencoder()}

# claim -> (changes that move its evidence across the rule, the verdict there)
OTHER_SIDE = {
    "shared_parameter_folds": ({"theory": theory(shared=shared_parameter(diff64=1e-7))}, "does not hold"),
    "sigmoid_derivative": ({"theory": theory(fd=1e-6)}, "does not hold"),
    "zero_init_never_learns": ({"theory": theory(mlp_frozen=3)}, "partly"),
    "random_init_learns": ({"theory": theory(random_loss=0.6)}, "does not hold"),
    "linear_fits_linear": ({"toy": toy(f0_linear=0.02)}, "does not hold"),
    "linear_fails_nonlinear": ({"toy": toy(nonlinear_linear=0.05)}, "does not hold"),
    "convnet_learns_all": ({"toy": toy(cnn=0.2, nonlinear_linear=1.0)}, "partly"),
    "convnet_depends_on_init": ({"toy": toy(cnn=0.02, cnn_max=0.03)}, "does not hold"),
    "numpy_backprop_correct": ({"toy": toy(rel_tf=1e-3)}, "does not hold"),
    "linear_accuracy": ({"linear": classifier(0.90)}, "does not hold"),
    "mlp_accuracy": ({"mlp": classifier(0.977), "mlp_sgd": classifier(0.97), "mlp_sigmoid": classifier(0.97)}, "partly"),
    "cnn_accuracy": ({"cnn": classifier(0.985)}, "does not hold"),
    "adam_vs_sgd": ({"mlp_sgd": classifier(0.99, lr=0.01, momentum=0.9)}, "does not hold"),
    "relu_beats_sigmoid": ({"mlp_sigmoid": classifier(0.99)}, "does not hold"),
    "low_lr_keeps_improving": ({"tuning_lr": tuning_lr(low_curve=(0.98, 0.97, 0.96, 0.95))}, "does not hold"),
    "lr_1_collapses": ({"tuning_lr": tuning_lr(lr1=(0.6, 0.8, 0.85, 0.9))}, "does not hold"),
    "lr_10_at_chance": ({"tuning_lr": tuning_lr(lr10=(0.1, 0.5, 0.1, 0.1))}, "does not hold"),
    "depth_costs_more_than_it_gains": ({"tuning_depth": tuning_depth(accs=(0.97, 0.98, 0.99))}, "partly"),
    "autoencoder_separates_digits": ({"autoencoder": autoencoder(deep_knn=0.42)}, "partly"),
    "autoencoder_reconstructs_better": ({"autoencoder": autoencoder(deep_mse=0.05)}, "partly"),
    "shallow_autoencoder_is_worse": ({"autoencoder": autoencoder(shallow_mse=0.037)}, "does not hold"),
}


def by_name(r: dict) -> dict:
    return {fn.__name__: fn(r) for fn in claims.CLAIMS}


def test_there_are_twenty_one_claims_and_each_has_a_test_of_both_sides():
    assert len(claims.CLAIMS) == 21
    assert set(OTHER_SIDE) == {fn.__name__ for fn in claims.CLAIMS}


def test_every_claim_holds_on_evidence_that_meets_its_rule():
    for name, claim in by_name(GOOD).items():
        assert claim is not None and claim.verdict == "holds", (name, claim)


@pytest.mark.parametrize("name", list(OTHER_SIDE))
def test_every_claim_turns_when_its_evidence_crosses_the_rule(name):
    changes, expected = OTHER_SIDE[name]
    r = {**copy.deepcopy(GOOD), **changes}
    claim = by_name(r)[name]
    assert claim.verdict == expected, (name, claim)


@pytest.mark.parametrize("changes,expected", [
    (dict(diff32=2e-5), "does not hold"),  # float32 outputs further apart than rounding explains
    (dict(mismatches=1), "does not hold"),
    (dict(shared_acc=(0.981, 0.982, 0.983)), "partly"),  # exact fold, but a gain beyond seed noise
    (dict(leaky_mse=1e-3), "partly"),  # the leaky unit never fitted |x|
    (dict(relu_mse=0.05), "partly"),  # a ReLU unit below the monotone bound: something is wrong
])
def test_shared_parameter_claim_turns_on_each_part_of_its_rule(changes, expected):
    r = {**GOOD, "theory": theory(shared=shared_parameter(**changes))}
    assert claims.shared_parameter_folds(r).verdict == expected
    evidence = claims.shared_parameter_folds(GOOD).evidence
    assert "predictions differ" in evidence and "|" not in evidence  # a pipe would split the report's table row
    old = {**GOOD, "theory": {k: v for k, v in theory().items() if k != "shared_parameter"}}
    assert claims.shared_parameter_folds(old) is None  # a summary from before the measurement


def test_zero_init_holds_only_when_every_tensor_is_frozen():
    r = {**GOOD, "theory": theory(toy_frozen=2, mlp_frozen=4)}
    assert claims.zero_init_never_learns(r).verdict == "holds"
    r = {**GOOD, "theory": theory(toy_frozen=0, mlp_frozen=0)}
    assert claims.zero_init_never_learns(r).verdict == "does not hold"


def test_evidence_quotes_the_summaries_numbers():
    assert "0.9930" in claims.cnn_accuracy(GOOD).evidence
    assert "momentum 0.9 (lr 0.01) 0.9790" in claims.adam_vs_sgd(GOOD).evidence
    assert "lr 1: best validation accuracy 0.800 (epoch 2), final 0.100" in claims.lr_1_collapses(GOOD).evidence


@pytest.mark.parametrize("curve, expected, story", [
    ((0.6, 0.8, 0.3, 0.1), "holds", "learned, then collapsed"),
    ((0.6, 0.8, 0.5, 0.41), "partly", "fell, but not by half"),  # just above half the peak
    ((0.6, 0.8, 0.79, 0.76), "does not hold", "did not collapse"),  # fell by less than 0.05
    ((0.1, 0.12, 0.1, 0.09), "does not hold", "never learned"),  # the Adam run: wobbles at chance
    ((0.2, 0.49, 0.2, 0.1), "does not hold", "never learned"),  # peak just below "learned"
])
def test_lr_1_collapses_only_after_it_learned(curve, expected, story):
    claim = claims.lr_1_collapses({"tuning_lr": tuning_lr(lr1=curve)})
    assert claim.verdict == expected and story in claim.evidence, claim


def test_lr_1_evidence_says_which_optimizer_learns_then_collapses():
    sgd = {"epochs": 15, "train_images": 18000, "runs": [
        {"optimizer": "sgd", "lr": 1.0, "diverged": False, "val_accuracy_per_epoch": [0.93, 0.97, 0.97]},
        {"optimizer": "sgd+momentum 0.9", "lr": 1.0, "diverged": False, "val_accuracy_per_epoch": [0.82, 0.85, 0.3]}]}
    evidence = claims.lr_1_collapses({**GOOD, "tuning_lr_sgd": sgd}).evidence
    assert "sgd lr 1: peak 0.970 at epoch 2, final 0.970, learns and holds" in evidence
    assert "sgd+momentum 0.9 lr 1: peak 0.850 at epoch 2, final 0.300, learns, then collapses" in evidence


def test_linear_fails_nonlinear_needs_every_seed_at_the_same_optimum():
    assert claims.linear_fails_nonlinear({"toy": toy(linear_spread=1.09)}).verdict == "holds"
    assert claims.linear_fails_nonlinear({"toy": toy(linear_spread=1.5)}).verdict == "partly"


def test_missing_stages_skip_their_claims_and_a_malformed_summary_is_reported():
    assert claims.evaluate({"cnn": GOOD["cnn"]}) == [claims.cnn_accuracy(GOOD)]
    broken = claims.evaluate({"autoencoder": {"methods": {"deep": {}, "pca": {}}}}, section="2.6")
    assert broken and all("could not be evaluated" in c.evidence for c in broken)
    assert {c.verdict for c in broken} == {"not evaluated"}  # unreadable evidence is no "does not hold"


def test_a_failed_stage_leaves_its_claims_not_evaluated_with_why():
    r = {k: v for k, v in GOOD.items() if k != "tuning_lr"}
    judged = claims.evaluate(r, section="2.5.4", missing={"tuning_lr": "FAILED: OSError: disk full"})
    by_verdict = {c.claim: c for c in judged}
    assert by_verdict["lr 1 collapses"].verdict == "not evaluated"
    assert "stage tuning_lr: FAILED: OSError: disk full" in by_verdict["lr 1 collapses"].evidence
    assert [c.verdict for c in judged].count("not evaluated") == 3  # the depth claim reads another stage


# claim -> (evidence inside its "partly" band, evidence just past it): both sides of the band
PARTLY_BANDS = {
    "linear_accuracy": ({"linear": classifier(0.917)}, {"linear": classifier(0.914)}),
    "cnn_accuracy": ({"cnn": classifier(0.988)}, {"cnn": classifier(0.986)}),
    "convnet_learns_all": ({"toy": toy(cnn=0.2)}, {"toy": toy(cnn=2.0)}),
    "adam_vs_sgd": ({"mlp_sgd": classifier(0.986, lr=0.01, momentum=0.9)},
                    {"mlp_sgd": classifier(0.988, lr=0.01, momentum=0.9)}),
    "relu_beats_sigmoid": ({"mlp_sigmoid": classifier(0.9825)}, {"mlp_sigmoid": classifier(0.984)}),
    "depth_costs_more_than_it_gains": ({"tuning_depth": tuning_depth(accs=(0.97, 0.98, 0.99))},
                                       {"tuning_depth": tuning_depth(accs=(0.97, 0.98, 0.99), seconds=(1, 1.1, 1.2))}),
    "autoencoder_separates_digits": ({"autoencoder": autoencoder(deep_knn=0.42)}, {"autoencoder": autoencoder(deep_knn=0.39)}),
    "autoencoder_reconstructs_better": ({"autoencoder": autoencoder(deep_mse=0.05)},
                                        {"autoencoder": autoencoder(deep_mse=0.057)}),
    "lr_1_collapses": ({"tuning_lr": tuning_lr(lr1=(0.6, 0.8, 0.7, 0.74))},
                       {"tuning_lr": tuning_lr(lr1=(0.6, 0.8, 0.78, 0.76))}),
    "linear_fails_nonlinear": ({"toy": toy(linear_spread=1.5)}, {"toy": toy(linear_spread=1.5, nonlinear_linear=0.05)}),
}


@pytest.mark.parametrize("name", list(PARTLY_BANDS))
def test_partly_bands_on_both_sides(name):
    inside, past = PARTLY_BANDS[name]
    assert by_name({**copy.deepcopy(GOOD), **inside})[name].verdict == "partly"
    assert by_name({**copy.deepcopy(GOOD), **past})[name].verdict == "does not hold"
