"""Markdown tables and matplotlib figures (saved as PNG) for experiment results."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from probegen_jax.io import write_text


def pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Lay out, save as PNG (parents created) and close ``fig``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """``"81.23 ± 0.45"``; the std is the sample std over seeds (0 for one value)."""
    v = np.asarray(values, float) * scale
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {std:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def save_markdown(path: str | os.PathLike, title: str, body: str) -> Path:
    path = Path(path)
    write_text(path, f"# {title}\n\n{body}\n")
    return path


def plot_coordinate_probes(
    probes: Mapping[str, np.ndarray], path: str | os.PathLike, *, background: np.ndarray | None = None,
    title: str = "learned probes on the INR domain",
) -> Path:
    """One panel per method: probe coordinates (row, col) over [-1, 1]^2, on ``background``."""
    plt = pyplot()

    names = list(probes)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        pts = np.asarray(probes[name])
        lim = max(1.1, float(np.abs(pts).max()) * 1.05)
        if background is not None:
            ax.imshow(background, cmap="gray", extent=(-1, 1, 1, -1), alpha=0.6)
        ax.add_patch(plt.Rectangle((-1, -1), 2, 2, fill=False, ls="--", lw=0.8, color="tab:blue"))
        ax.scatter(pts[:, 1], pts[:, 0], s=10, c="tab:red", edgecolors="k", linewidths=0.3)
        ax.set(xlim=(-lim, lim), ylim=(lim, -lim), title=name, aspect="equal")
        ax.tick_params(labelsize=7)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike, *,
                xlabel: str, ylabel: str, title: str = "", logx: bool = False, marker: str | None = None) -> Path:
    """Line plot of ``{label: (x, y)}`` (``logx``: a log-scaled x axis; ``marker``: mark each point)."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, (x, y) in curves.items():
        ax.plot(x, y, label=label, marker=marker)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:  # ticks at the points, labelled plainly
        ax.set_xscale("log")
        ticks = sorted({float(v) for x, _ in curves.values() for v in x})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_grouped_bars(values: Mapping[str, Mapping[str, float]], path: str | os.PathLike, *, ylabel: str,
                      title: str = "", chance: float | None = None) -> Path:
    """Grouped bar chart of ``{group: {series: value}}`` (e.g. per tree, per method)."""
    plt = pyplot()

    groups = list(values)
    series = list(dict.fromkeys(s for g in groups for s in values[g]))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(groups) * max(1, len(series) / 3), 3.8))
    for j, s in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, [values[g].get(s, np.nan) for g in groups], width, label=s)
    if chance is not None:
        ax.axhline(chance, color="k", ls="--", lw=0.8, label="chance")
    ax.set_xticks(range(len(groups)), groups)
    ax.set(ylabel=ylabel, title=title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.08))  # below, clear of the bars
    return save_figure(fig, path)


def plot_scatter(points: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike, *,
                 xlabel: str = "true", ylabel: str = "predicted", title: str = "") -> Path:
    """One panel per label: predicted vs true values with the diagonal (e.g. CNN test accuracy)."""
    plt = pyplot()

    names = list(points)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        x, y = (np.asarray(v, float) for v in points[name])
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], ls="--", lw=0.8, color="tab:blue")
        ax.scatter(x, y, s=8, c="tab:red", edgecolors="k", linewidths=0.2, alpha=0.7)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=name)
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_image_probes(probes: Mapping[str, np.ndarray], path: str | os.PathLike, *, count: int = 8,
                      title: str = "learned probes") -> Path:
    """One row per method: its first ``count`` image probes ``[K, H, W, C]`` in [-1, 1]."""
    plt = pyplot()

    names = list(probes)
    fig, axes = plt.subplots(len(names), count, figsize=(1.2 * count, 1.35 * len(names)), squeeze=False)
    for row, name in zip(axes, names, strict=True):
        images = np.asarray(probes[name])[:count]
        for ax, img in zip(row, images, strict=False):
            img = (img + 1) / 2
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_embedding_2d(embeddings: np.ndarray, values: np.ndarray, path: str | os.PathLike, *,
                      label: str = "test accuracy", title: str = "embeddings (PCA)") -> Path:
    """First two principal components of ``embeddings [N, D]``, coloured by ``values [N]``."""
    plt = pyplot()

    x = np.asarray(embeddings, float)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T
    fig, ax = plt.subplots(figsize=(4.6, 3.8))
    points = ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(values, float), s=6, cmap="viridis")
    fig.colorbar(points, ax=ax, label=label)
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    return save_figure(fig, path)
