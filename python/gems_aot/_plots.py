"""PNG plots of benchmark and harness results (matplotlib, an optional dependency:
`pip install gems-aot[bench]`)."""

from __future__ import annotations

import math
import pathlib
from typing import Optional, Sequence


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("gems_aot: PNG plots need matplotlib (pip install 'gems-aot[bench]')") from e
    matplotlib.use("Agg")  # files only: no display on a GPU box
    import matplotlib.pyplot as plt

    return plt


def bars(path: pathlib.Path, labels: Sequence[str], series: dict[str, Sequence[float]], title: str, xlabel: str,
         ratios: bool = False) -> None:
    """Horizontal grouped bars per label, one colour per series. Ratios (1.0 = parity, drawn as a
    line) go on a log axis, so that 0.5x and 2x lie as far from parity."""
    plt = _pyplot()
    height = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.28 * len(labels) * max(len(series), 1)))
    for i, (name, values) in enumerate(series.items()):
        ax.barh([j + i * height for j in range(len(labels))], values, height=height, label=name)
    if ratios:
        ax.axvline(1.0, color="black", linewidth=0.8)
        ax.set_xscale("log")
    ax.set_yticks([j + height * (len(series) - 1) / 2 for j in range(len(labels))], labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_curves(path: pathlib.Path, curves: dict[str, Sequence[float]], title: str,
                band: Optional[tuple[Sequence[float], Sequence[float]]] = None, band_label: str = "",
                floor: Optional[float] = None) -> None:
    """Loss per step for each curve; `band` (low, high per step) shaded, `floor` a dashed line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if band is not None:
        low, high = band
        ax.fill_between(range(len(low)), low, high, color="grey", alpha=0.3, label=band_label or None)
    for name, values in curves.items():
        ax.plot(range(len(values)), values, linewidth=1.0, label=name)
    if floor is not None and math.isfinite(floor):
        ax.axhline(floor, color="black", linestyle="--", linewidth=0.8, label="optimum")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
