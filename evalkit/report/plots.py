"""Matplotlib figures (Agg backend, no display): board bar charts, metric histograms."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalkit.report.leaderboard import NO_INPUT, BoardTable

# PNG metadata that would otherwise name the matplotlib version: keep files comparable.
_PNG_META: dict[str, Any] = {"Software": None}
RUN_COLOUR = "#d62976"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _legend_label(label: str, inputs: Sequence[str], is_run: bool) -> str:
    known = [i for i in inputs if i != NO_INPUT]
    kind = ", ".join(known)
    if is_run:
        return f"{label} ({kind})" if kind else label
    return f"{label} ({kind}, reported)" if kind else f"{label} (reported)"


def board_chart(table: BoardTable, path: Path) -> Path:
    """Grouped horizontal bars: one group per column, one bar per row; runs highlighted."""
    plt = _pyplot()
    import numpy as np

    n_cols, n_rows = len(table.columns), len(table.rows)
    height = max(2.5, 0.22 * n_cols * n_rows + 0.6 * n_cols + 1.0)
    fig, ax = plt.subplots(figsize=(9, min(height, 40)))
    cmap = plt.get_cmap("tab20")
    group = 1.0 / max(n_rows, 1) * 0.85
    centres = np.arange(n_cols)
    for r, row in enumerate(table.rows):
        ys = [centres[k] + (r - (n_rows - 1) / 2) * group for k in range(n_cols) if k in row.cells]
        xs = [row.cells[k] for k in range(n_cols) if k in row.cells]
        is_run = row.kind == "run"
        ax.barh(
            ys,
            xs,
            height=group * 0.9,
            label=_legend_label(row.label, row.inputs, is_run),
            color=RUN_COLOUR if is_run and n_rows == 1 else cmap(r % 20),
            edgecolor="black" if is_run else "none",
            linewidth=0.8,
        )
    ax.set_yticks(centres)
    ax.set_yticklabels([c.header for c in table.columns])
    ax.invert_yaxis()
    ax.set_xlabel("score (papers' scale)")
    ax.set_title(table.board.title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=_PNG_META)
    plt.close(fig)
    return path


def histograms_png(values: Mapping[str, Sequence[float]]) -> bytes:
    """Small multiples: the distribution of each per-sample metric, as PNG bytes."""
    plt = _pyplot()
    names = [n for n, v in values.items() if len(v)]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4.2 * max(len(names), 1), 2.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        data = list(values[name])
        ax.hist(data, bins=20, color="#4c72b0", edgecolor="white")
        mean = sum(data) / len(data)
        ax.axvline(mean, color=RUN_COLOUR, linestyle="--", linewidth=1.5)
        ax.set_title(f"{name}  (mean {mean:.2f}, n = {len(data)})", fontsize=10)
        ax.set_ylabel("samples")
        ax.grid(axis="y", alpha=0.3)
    if not names:
        axes[0][0].text(0.5, 0.5, "no per-sample metric", ha="center", va="center")
        axes[0][0].set_axis_off()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata=_PNG_META)
    plt.close(fig)
    return buf.getvalue()
