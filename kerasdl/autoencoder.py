"""Section 2.6: a 784 -> 2 -> 784 dense autoencoder against PCA(2).

    python -m kerasdl.autoencoder [--arch deep shallow] [--epochs 30]

Trains each autoencoder through the shared fit path, fits PCA(2) on the training images,
and measures on the test set: reconstruction MSE, 5-nearest-neighbour digit accuracy of the
2-D codes, and their silhouette score by digit. Exports autoencoder/encoder/decoder as
SavedModels. Writes runs/autoencoder/{latent.png, reconstructions.png, summary.json, table.md}
and prints the summary as one JSON line.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerasdl.atomic import write_text
from kerasdl.summary import config_json, write as write_summary
from kerasdl.errors import add_quiet, add_slice_flags, entry_point, parse_config_args, positive, print_summary, writable_dir
from kerasdl import locks

log = logging.getLogger("kerasdl.autoencoder")

ARCHS = ("deep", "shallow")


@dataclass
class AutoencoderConfig:
    """Section 2.6's experiment; the defaults are the numbers in the README."""

    archs: tuple[str, ...] = ARCHS
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    limit: int | None = None
    validation_size: float | None = None
    seed: int = 0
    neighbours: int = 5
    precision: str = "float32"  # Keras dtype policy (devices.precision_policy)
    restart: bool = False  # discard a backup in run_dir/<arch>/backup instead of resuming from it
    run_dir: Path = field(default_factory=lambda: Path("runs/autoencoder"))
    export_dir: Path = field(default_factory=lambda: Path("saved_models"))


def code_quality(train_codes, y_train, test_codes, y_test, k: int, seed: int) -> dict:
    """How well 2-D codes separate digits: k-NN accuracy (fit on train, scored on test) and silhouette."""
    from sklearn.metrics import silhouette_score
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=k).fit(train_codes, y_train)
    sample = min(len(test_codes), 5000)
    return {
        "knn_accuracy": float(knn.score(test_codes, y_test)),
        "silhouette": float(silhouette_score(test_codes, y_test, sample_size=sample, random_state=seed)),
    }


def train_autoencoder(arch: str, split, cfg: AutoencoderConfig, verbose="auto"):
    """One autoencoder through training.fit, images as their own targets."""
    from kerasdl import data, models, training

    def make(steps_per_epoch: int):  # constant learning rate: the step count is not needed
        model = models.autoencoder(arch)
        model.compile(optimizer=models.optimizer("adam", cfg.lr), loss="mse")
        return model

    as_targets = data.Split(split.x_train, split.x_train, split.x_val, split.x_val, split.x_test, split.x_test)
    fit_cfg = training.FitConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, verbose=verbose,
                                 precision=cfg.precision, restart=cfg.restart,
                                 keep_backup=True,  # removed once the summary is written
                                 title=f"{arch} autoencoder (MSE)")
    return training.fit(make, as_targets, cfg.run_dir / arch, fit_cfg)


@locks.one_run_at_a_time(reads_mnist=True)
def run(cfg: AutoencoderConfig, verbose="auto") -> dict:
    """Section 2.6 end to end; `verbose` is Keras' (a progress bar per epoch, or 0)."""
    from sklearn.decomposition import PCA

    from kerasdl import artifacts, data, plots, resume, training

    run_dir = writable_dir(cfg.run_dir, "--run-dir")
    export_dir = writable_dir(cfg.export_dir, "--export-dir")
    split = data.mnist_split("flat", limit=cfg.limit, validation_size=cfg.validation_size)
    x_test, y_test = split.x_test, split.y_test

    log.info("autoencoder: PCA(2) on %d training images", len(split.x_train))
    pca = PCA(n_components=2, random_state=cfg.seed).fit(split.x_train)
    pca_test = pca.transform(x_test)
    methods = {"pca": {
        "reconstruction_mse": float(np.mean((pca.inverse_transform(pca_test) - x_test) ** 2)),
        **code_quality(pca.transform(split.x_train), split.y_train, pca_test, y_test, cfg.neighbours, cfg.seed),
    }}
    codes, reconstructions, exported = {"pca": pca_test}, {"PCA(2)": pca.inverse_transform(pca_test[:10])}, {}

    for arch in cfg.archs:
        log.info("autoencoder: training the %s autoencoder for %d epochs", arch, cfg.epochs)
        result = train_autoencoder(arch, split, cfg, verbose)
        model = result.model
        encoder, decoder = model.get_layer("encoder"), model.get_layer("decoder")
        test_codes = encoder.predict(x_test, batch_size=1000, verbose=0)
        recon = decoder.predict(test_codes, batch_size=1000, verbose=0)
        methods[arch] = {
            "reconstruction_mse": float(np.mean((recon - x_test) ** 2)),
            **code_quality(encoder.predict(split.x_train, batch_size=1000, verbose=0), split.y_train, test_codes,
                           y_test, cfg.neighbours, cfg.seed),
            "epochs": cfg.epochs, "train_seconds": round(result.train_seconds, 2),
            "history_csv": str(result.history_csv), "history_plot": str(result.history_plot),
        }
        codes[arch], reconstructions[f"{arch} AE"] = test_codes, recon[:10]
        suffix = "" if arch == "deep" else f"_{arch}"
        card = {"data": {"dataset": "MNIST", "train_images": int(len(split.x_train)), "test_images": int(len(x_test))},
                "precision": cfg.precision,
                "training": config_json(cfg),
                "results": {k: methods[arch][k] for k in ("reconstruction_mse", "knn_accuracy", "silhouette",
                                                          "epochs", "train_seconds")},
                "how_the_recipe_was_chosen": "The write-up's architecture and budget; nothing tuned on the test set."}
        # resumed after its last epoch (a crash after training): reuse what was exported from these weights
        trained_nothing = result.resumed_from_epoch >= cfg.epochs
        exported[arch] = {part: str(artifacts.export(m, export_dir, f"{part}{suffix}", card={
                              "description": f"The {part} of the {arch} 784-2-784 autoencoder (section 2.6): {role}.",
                              **card}, digest=training.weights_digest(m), reuse=trained_nothing).saved_model)
                          for part, m, role in (("autoencoder", model, "784 pixels in, 784 reconstructed out"),
                                                ("encoder", encoder, "784 pixels in, a 2-D code out"),
                                                ("decoder", decoder, "a 2-D code in, 784 pixels out"))}

    latent_png, recon_png = run_dir / "latent.png", run_dir / "reconstructions.png"
    plots.latent_scatter({name: codes[key] for key, name in
                          (("deep", "deep autoencoder"), ("shallow", "shallow autoencoder"), ("pca", "PCA(2)"))
                          if key in codes}, y_test, latent_png)
    plots.digit_rows({"original": x_test[:10], **reconstructions}, recon_png)
    table = run_dir / "table.md"
    write_text(table, markdown_table(methods))
    ratio = {arch: methods[arch]["reconstruction_mse"] / methods["pca"]["reconstruction_mse"] for arch in cfg.archs}
    summary = {
        "section": "2.6",
        "precision": cfg.precision,
        "methods": methods,
        "mse_ratio_to_pca": ratio,
        "figures": {"latent": str(latent_png), "reconstructions": str(recon_png)},
        "table": str(table),
        "saved_models": exported,
        "config": config_json(cfg),
    }
    write_summary(run_dir, summary)
    for arch in cfg.archs:  # the results are on disk: a rerun is a new run
        resume.discard_backup(cfg.run_dir / arch)
    return summary


def markdown_table(methods: dict) -> str:
    names = {"deep": "deep AE 784-512-128-2-128-512-784", "shallow": "shallow AE 784-2-784", "pca": "PCA(2)"}
    lines = ["| method | test reconstruction MSE | 5-NN accuracy of 2-D codes | silhouette by digit |",
             "|---|---|---|---|"]
    lines += [f"| {names[k]} | {m['reconstruction_mse']:.4f} | {m['knn_accuracy']:.4f} | {m['silhouette']:.3f} |"
              for k, m in methods.items()]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    d = AutoencoderConfig()
    p = argparse.ArgumentParser(prog="python -m kerasdl.autoencoder",
                                description="Section 2.6: 784 -> 2 -> 784 autoencoders against PCA(2) on MNIST.")
    p.add_argument("--arch", dest="archs", nargs="+", choices=ARCHS, default=list(d.archs),
                   help="deep (784-512-128-2-...) and/or shallow (784-2-784) (default: both)")
    p.add_argument("--epochs", type=positive(int), default=d.epochs, help=f"epochs (default {d.epochs})")
    p.add_argument("--batch-size", type=positive(int), default=d.batch_size, help=f"batch (default {d.batch_size})")
    p.add_argument("--lr", type=positive(float), default=d.lr, help=f"Adam learning rate (default {d.lr})")
    add_slice_flags(p, d, seed_help="random seed",
                    precision_help="Keras dtype policy (default float32); codes and reconstructions stay float32")
    p.add_argument("--restart", action="store_true",
                   help="discard a crashed run's backup and train from epoch 1 (default: resume from it)")
    p.add_argument("--run-dir", type=Path, default=d.run_dir, help=f"figures, histories, JSON (default {d.run_dir})")
    p.add_argument("--export-dir", type=Path, default=d.export_dir,
                   help="SavedModels autoencoder/, encoder/, decoder/ go here (default saved_models)")
    return add_quiet(p)


def main(argv=None) -> int:
    values, quiet = parse_config_args(parser(), argv)
    cfg = AutoencoderConfig(**{**values, "archs": tuple(dict.fromkeys(values["archs"]))})
    return print_summary(lambda: run(cfg, verbose=0 if quiet else "auto"), quiet)


cli = entry_point(main, "python -m kerasdl.autoencoder")


if __name__ == "__main__":
    cli()
