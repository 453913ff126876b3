"""Report plots as base64 PNG strings (matplotlib's object API with the Agg canvas: no pyplot
global state, safe to call from a training process)."""

from __future__ import annotations

import base64
import functools
import io
from typing import Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
              "Source Han Sans SC", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC")


def _font_family() -> list[str]:
    """DejaVu Sans plus any installed CJK font as fallback, so Chinese labels are not boxes
    (only installed names: missing ones would make matplotlib log warnings)."""
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *[f for f in _CJK_FONTS if f in installed]]


def _png(fig: Figure) -> str:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _with_fonts(fn):
    """Run a plot function (figure building and PNG encoding) under the CJK-aware font list."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context({"font.family": _font_family()}):
            return fn(*args, **kwargs)
    return wrapper


@_with_fonts
def line_plot(series: dict[str, Sequence[Sequence[float]]], title: str, ylabel: str = "",
              log_keys: Sequence[str] = ()) -> str:
    """One line per series of [step, value] points."""
    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot()
    for name, pts in series.items():
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, markersize=3, label=name)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    return _png(fig)


@_with_fonts
def metrics_over_steps(series: dict[str, Sequence[Sequence[float]]]) -> str:
    """Generative metrics logged during training: 0-100 metrics on one axis, perplexity apart."""
    ppl = {k: v for k, v in series.items() if "perplexity" in k}
    text = {k: v for k, v in series.items() if k not in ppl}
    fig = Figure(figsize=(7, 3.6 if not ppl else 6.4))
    axes = [fig.add_subplot(2 if ppl else 1, 1, 1)]
    if ppl:
        axes.append(fig.add_subplot(2, 1, 2))
    for ax, group, ylabel in zip(axes, (text, ppl), ("score (0-100)", "perplexity")):
        for name, pts in group.items():
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", markersize=3, label=name.removeprefix("eval_gen_"))
        ax.set_ylabel(ylabel)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if group:
            ax.legend(fontsize=8)
    axes[0].set_title("Generation metrics during training")
    fig.tight_layout()
    return _png(fig)


@_with_fonts
def confusion_matrix_plot(labels: Sequence[str], matrix: Sequence[Sequence[float]]) -> str:
    """Heat map with counts in the cells (rows: true label, columns: predicted)."""
    n = len(labels)
    size = max(3.5, 0.6 * n + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_xticks(range(n), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max((max(r) for r in matrix if r), default=0)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:g}", ha="center", va="center",
                    color="white" if top and v > top / 2 else "black", fontsize=8)
    ax.set_title("Confusion matrix")
    return _png(fig)


@_with_fonts
def grouped_bars(groups: dict[str, dict[str, float]], title: str) -> str:
    """Bars per metric, one colour per model (e.g. base vs fine-tuned)."""
    models = list(groups)
    metrics = sorted({m for g in groups.values() for m in g})
    fig = Figure(figsize=(7, 3.6))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(models))
    for k, model in enumerate(models):
        xs = [i + k * width for i in range(len(metrics))]
        ax.bar(xs, [groups[model].get(m) or 0.0 for m in metrics], width, label=model)
    ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(metrics))], labels=metrics)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
