"""Markdown tables and matplotlib figures (saved as PNG) for experiment results."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from probegen_jax.io import write_text


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike, *,
                xlabel: str, ylabel: str, title: str = "") -> Path:
    """Line plot of ``{label: (x, y)}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, (x, y) in curves.items():
        ax.plot(x, y, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
