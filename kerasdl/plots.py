"""Matplotlib figures, one function per kind of figure.

Every function draws on its own `matplotlib.figure.Figure` (never pyplot's global state, and
importing this module changes no backend), writes a PNG to `path` atomically and returns the
Figure, so a notebook shows it inline and a command-line run just has the file.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kerasdl import atomic

SPLIT_STYLE = {"train": "-", "val": "--", "test": ":"}


def figure(rows: int = 1, cols: int = 1, figsize=(6, 4), **subplots) -> tuple[Figure, np.ndarray]:
    """A standalone Figure (no pyplot) and its rows x cols axes as a 2-D array."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(rows, cols, squeeze=False, **subplots)


def save(fig: Figure, path) -> Figure:
    """Write `fig` to `path` via a temporary sibling, so a crash never leaves half a PNG; return `fig`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(path, suffix=".png") as tmp:  # savefig reads the format from the name
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    return fig


def history(rows: list[dict], path, title: str = "") -> Figure:
    """Loss and (if recorded) accuracy vs epoch, one line per split (train / val / test)."""
    metrics = ["loss"] + (["accuracy"] if rows and "accuracy" in rows[0] else [])
    fig, axes = figure(1, len(metrics), figsize=(5.5 * len(metrics), 4))
    epochs = [r["epoch"] + 1 for r in rows]
    for ax, metric in zip(axes[0], metrics):
        for split, style in SPLIT_STYLE.items():
            key = metric if split == "train" else f"{split}_{metric}"
            if rows and key in rows[0]:
                ax.plot(epochs, [r[key] for r in rows], style, marker="o", markersize=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if metric == "loss" and all(r["loss"] > 0 for r in rows):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save(fig, path)


def curves(panels: dict[str, dict[str, list[float]]], path, xlabel: str, ylabel: str, title: str = "",
           logy: bool = False) -> Figure:
    """One panel per entry of `panels`, each with several named curves (e.g. loss vs step per initialisation)."""
    fig, axes = figure(1, len(panels), figsize=(5.5 * len(panels), 4))
    for ax, (panel, series) in zip(axes[0], panels.items()):
        for name, ys in series.items():
            ax.plot(np.arange(1, len(ys) + 1), ys, label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title(panel)
    fig.suptitle(title)
    return save(fig, path)


def seed_bands(curves: dict[str, dict[str, list[list[float]]]], floors: dict[str, float], xs: list[int], path,
               labels: dict[str, str] | None = None, ylabel: str = "test MSE") -> Figure:
    """A grid: one column per function, one row per model; median over seeds as a line, the
    min-max band over seeds shaded, the noise floor dashed. Columns share their y axis."""
    functions = list(curves)
    model_names = list(next(iter(curves.values())))
    fig, axes = figure(len(model_names), len(functions), figsize=(4.2 * len(functions), 3.2 * len(model_names)),
                       sharex=True, sharey="col")
    for col, fn in enumerate(functions):
        for row, model in enumerate(model_names):
            ax = axes[row][col]
            runs = np.array(curves[fn][model], dtype=float)
            for run in runs:
                ax.plot(xs, run, color="C0", alpha=0.25, linewidth=0.8)
            ax.fill_between(xs, runs.min(axis=0), runs.max(axis=0), color="C0", alpha=0.15)
            ax.plot(xs, np.median(runs, axis=0), color="C0", linewidth=2, label=f"median of {len(runs)} seeds")
            ax.axhline(floors[fn], color="k", linestyle="--", linewidth=1, label="noise floor")
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.set_title(f"{(labels or {}).get(model, model)} on {fn}")
            if col == 0:
                ax.set_ylabel(ylabel)
            if row == len(model_names) - 1:
                ax.set_xlabel("iteration")
    axes[0][0].legend(fontsize=8)
    return save(fig, path)


def functions(xs: np.ndarray, series: dict[str, np.ndarray], path, title: str = "") -> Figure:
    """Plain y(x) curves on one axis, dashed for names that end in '(identity)'."""
    fig, ((ax,),) = figure(figsize=(6, 4))
    for name, ys in series.items():
        ax.plot(xs, ys, "--" if name.endswith("(identity)") else "-", label=name)
    ax.set_xlabel("x")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return save(fig, path)


def latent_scatter(codes: dict[str, np.ndarray], labels: np.ndarray, path) -> Figure:
    """2-D codes side by side, one panel per method, coloured by digit with one legend."""
    fig, axes = figure(1, len(codes), figsize=(5 * len(codes), 4.6))
    cmap = matplotlib.colormaps["tab10"]
    for ax, (name, z) in zip(axes[0], codes.items()):
        for digit in range(10):
            pts = z[labels == digit]
            ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5, color=cmap(digit), label=str(digit), rasterized=True)
        ax.set_title(name)
        ax.set_xlabel("code 1")
        ax.set_ylabel("code 2")
    handles = [Line2D([], [], marker="o", linestyle="", color=cmap(d), label=str(d)) for d in range(10)]
    fig.legend(handles=handles, title="digit", loc="center right")
    fig.subplots_adjust(right=0.92)
    return save(fig, path)


def digit_rows(rows: dict[str, np.ndarray], path) -> Figure:
    """A grid of 28x28 images: one row per name (e.g. originals, then each method's reconstructions)."""
    n = max(len(v) for v in rows.values())
    fig, axes = figure(len(rows), n, figsize=(1.1 * n + 1.5, 1.2 * len(rows)))
    for r, (name, images) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(np.asarray(images[c]).reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        axes[r][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    return save(fig, path)


def strips(groups: dict[str, list[float]], path, ylabel: str, title: str = "") -> Figure:
    """One column of points per group (e.g. test accuracy per seed), its mean as a short bar."""
    fig, ((ax,),) = figure(figsize=(1.6 * len(groups) + 2.5, 4))
    for i, (name, values) in enumerate(groups.items()):
        values = np.asarray(values, dtype=float)
        offsets = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.plot(i + offsets, values, "o", color=f"C{i}", alpha=0.8)
        ax.hlines(values.mean(), i - 0.25, i + 0.25, color=f"C{i}", linewidth=2)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title)
    return save(fig, path)


def fits_and_residuals(x: np.ndarray, target: np.ndarray, fits: dict[str, np.ndarray], path,
                       target_name: str = "target", title: str = "") -> Figure:
    """Left: the target and each fit against x; right: each fit's residual (fit - target)."""
    fig, axes = figure(1, 2, figsize=(11, 4))
    left, right = axes[0]
    left.plot(x, target, "k--", label=target_name)
    for i, (name, ys) in enumerate(fits.items()):
        left.plot(x, ys, color=f"C{i}", label=name)
        right.plot(x, np.asarray(ys) - target, color=f"C{i}", label=name)
    for ax, ylabel in ((left, "output"), (right, "residual")):
        ax.set_xlabel("x")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save(fig, path)
