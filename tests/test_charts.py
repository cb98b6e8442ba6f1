"""charts: one style, legends outside the data, a printed one-line summary (Agg backend)."""

from __future__ import annotations

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from redistutor import charts  # noqa: E402


def test_figure_labels_and_palette():
    fig, ax = charts.figure("Hits vs TTL", xlabel="TTL (s)", ylabel="hit rate (%)")
    assert ax.get_title() == "Hits vs TTL" and ax.get_xlabel() == "TTL (s)" and ax.get_ylabel() == "hit rate (%)"
    (line,) = ax.plot([1, 2, 3], [10, 20, 30], label="cache-aside")
    assert matplotlib.colors.to_hex(line.get_color()).upper() == charts.PALETTE[0].upper()
    assert len(charts.PALETTE) == 8 and len(set(charts.PALETTE)) == 8
    matplotlib.pyplot.close(fig)


def test_finish_puts_the_legend_outside_and_prints_the_summary(capsys):
    fig, ax = charts.figure("Throughput", xlabel="clients", ylabel="ops/s")
    ax.plot([1, 2, 4], [100, 180, 300], label="pipeline")
    ax.plot([1, 2, 4], [50, 60, 65], label="one by one")
    charts.finish(ax, summary="in this run the pipeline reached 300 ops/s")
    assert capsys.readouterr().out == "Chart: in this run the pipeline reached 300 ops/s\n"
    fig.canvas.draw()
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["pipeline", "one by one"]
    box = legend.get_window_extent()
    assert box.x0 >= ax.get_window_extent().x1  # right of the plotting area: never over the data
    matplotlib.pyplot.close(fig)


def test_finish_on_several_axes_and_no_legend_without_labels(capsys):
    fig, axes = charts.figure("Two panels", xlabel="t (s)", ylabel="keys", ncols=2)
    axes[0].plot([0, 1], [0, 1], label="a")
    axes[1].plot([0, 1], [1, 0])
    charts.finish(axes, summary="")
    assert capsys.readouterr().out == ""
    assert axes[0].get_legend() is not None and axes[1].get_legend() is None
    assert fig._suptitle.get_text() == "Two panels"
    matplotlib.pyplot.close(fig)
