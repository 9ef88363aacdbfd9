"""The search figures: curves per trial, and depth's accuracy-vs-time trade-off."""

from __future__ import annotations

from matplotlib.figure import Figure

from kerasdl.plots import figure, save


def curves_by_trial(curves: dict[str, list[dict]], path, title: str = "") -> Figure:
    """2x2: accuracy and loss vs epoch, train and test panels, one line per trial."""
    fig, axes = figure(2, 2, figsize=(11, 7.5), sharex=True)
    for col, split in enumerate(("train", "test")):
        for row, metric in enumerate(("accuracy", "loss")):
            ax = axes[row][col]
            key = metric if split == "train" else f"test_{metric}"
            for label, rows in curves.items():
                ax.plot([r["epoch"] + 1 for r in rows], [r[key] for r in rows], marker=".", label=label)
            ax.set_title(f"{split} {metric}")
            ax.set_ylabel(metric)
            if metric == "loss":
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)


def depth_tradeoff(rows: list[dict], path) -> Figure:
    """Test accuracy and seconds per epoch against the number of hidden layers."""
    rows = sorted(rows, key=lambda r: r["hyperparameters"]["hidden_layers"])
    depth = [r["hyperparameters"]["hidden_layers"] for r in rows]
    fig, ((acc_ax, time_ax),) = figure(1, 2, figsize=(10, 4))
    acc_ax.plot(depth, [r["final"]["test_accuracy"] for r in rows], "o-", label="final")
    acc_ax.plot(depth, [r["best"]["test_accuracy"] for r in rows], "s--", label="best epoch")
    acc_ax.set_xlabel("hidden layers")
    acc_ax.set_ylabel("test accuracy")
    acc_ax.legend()
    time_ax.bar(depth, [r["seconds_per_epoch"] for r in rows])
    for d, r in zip(depth, rows):
        time_ax.annotate(f"{r['params'] / 1e6:.2f}M params", (d, r["seconds_per_epoch"]), ha="center", va="bottom",
                         fontsize=8)
    time_ax.set_xlabel("hidden layers")
    time_ax.set_ylabel("seconds per epoch")
    for ax in (acc_ax, time_ax):
        ax.set_xticks(depth)
        ax.grid(alpha=0.3)
    fig.suptitle("Deeper MLPs: accuracy gained vs time spent")
    return save(fig, path)
