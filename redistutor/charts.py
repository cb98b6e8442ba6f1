"""One look for every chart in the collection: sizes, fonts, a colour-blind-safe palette,
legends outside the data, titles and axis labels with units, and a one-line text summary.

    fig, ax = charts.figure("Cache hits vs TTL", xlabel="TTL (s)", ylabel="hit rate (%)")
    ax.plot(ttls, rates, label="cache-aside")
    charts.finish(ax, summary=f"in this run the hit rate reached {rates[-1]:.0f} %")

``finish`` moves the legend outside the plotting area and prints the summary under the chart, so a
reader who cannot see the picture (a screen reader, a text-only CI log) still gets the finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["PALETTE", "figure", "finish", "style"]

# Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
OK, BAD, NEUTRAL = "#009E73", "#D55E00", "#0072B2"

_RC = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 9,
    "legend.frameon": False,
}


def style() -> None:
    """Apply the collection's matplotlib style (palette, fonts, grid); idempotent."""
    import matplotlib as mpl
    from cycler import cycler

    mpl.rcParams.update(_RC)  # type: ignore[arg-type]  # matplotlib types the keys as literals
    mpl.rcParams["axes.prop_cycle"] = cycler(color=PALETTE)


def figure(title: str = "", *, xlabel: str = "", ylabel: str = "", nrows: int = 1, ncols: int = 1,
           width: float = 8.0, height: float | None = None, **kwargs: Any):
    """A styled figure; returns ``(fig, ax)`` (or ``(fig, axes)`` when there are several)."""
    import matplotlib.pyplot as plt

    style()
    height = height if height is not None else 3.2 * nrows
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, **kwargs)
    flat = [a for row in axes for a in row]
    if len(flat) == 1:
        flat[0].set_title(title)
        flat[0].set_xlabel(xlabel)
        flat[0].set_ylabel(ylabel)
        return fig, flat[0]
    if title:
        fig.suptitle(title, fontweight="bold")
    for a in flat:
        a.set_xlabel(xlabel)
        a.set_ylabel(ylabel)
    return fig, axes if ncols > 1 and nrows > 1 else flat


def finish(ax_or_axes: Any, *, summary: str = "", title: str | None = None, xlabel: str | None = None,
           ylabel: str | None = None, legend: bool = True) -> None:
    """Label, move legends outside the data, lay out, and print the one-line summary."""
    axes: Sequence[Any] = ax_or_axes if isinstance(ax_or_axes, (list, tuple)) else [ax_or_axes]
    for ax in axes:
        if title is not None:
            ax.set_title(title)
        if xlabel is not None:
            ax.set_xlabel(xlabel)
        if ylabel is not None:
            ax.set_ylabel(ylabel)
        handles, labels = ax.get_legend_handles_labels()
        if legend and labels:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig = axes[0].figure
    fig.tight_layout()
    if summary:
        print(f"Chart: {summary}")
