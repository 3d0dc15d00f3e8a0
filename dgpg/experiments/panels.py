"""The figure of a domain's experiment over several panels (a network, a case, an N): on top,
each learner's test cost relative to the domain's reference with its 95 % CI and the
heuristics' beside it; below, one panel each of the learners' validation curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, MaxNLocator  # noqa: E402

COLORS = {"dgpg": "C0", "mappo": "C1", "ippo": "C2"}


def relative_cost_figure(
    panels: Sequence[Any], labels: Sequence[str], algos: Sequence[str],
    learners: Mapping[tuple[Any, str], tuple[float, float]],
    heuristics: Mapping[tuple[Any, str], float], markers: Mapping[str, str],
    curves: Mapping[tuple[Any, str], np.ndarray], reference: str, title: str, ylabel: str,
    log: bool = False, styles: Mapping[str, tuple[str, str]] | None = None,
):
    """`learners[panel, algo]` = (cost / reference, its CI), `heuristics[panel, name]` = cost /
    reference, `curves[panel, algo]` = validation cost / reference (episodes, seeds); `labels`
    name the panels on the top axis. An entry of `algos` may carry a suffix after a comma
    ("dgpg, scorer-id"): its colour is the learner's, its (marker, line style) `styles[entry]`."""
    styles = styles or {}
    n = len(panels)
    fig = plt.figure(figsize=(max(10, 3.2 * n), 8))
    top = fig.add_subplot(2, 1, 1)
    width = 0.6 / len(algos)
    for i, algo in enumerate(algos):
        x = np.arange(n) + (i - (len(algos) - 1) / 2) * width
        mine = [learners[p, algo] for p in panels]
        top.errorbar(x, [m for m, _ in mine], yerr=[c for _, c in mine],
                     fmt=styles.get(algo, ("o", "-"))[0], capsize=3, color=_color(algo),
                     label=algo, ms=7)
    for name, marker in markers.items():
        top.scatter(np.arange(n) + 0.42, [heuristics[p, name] for p in panels], marker=marker,
                    color="0.4", s=25, label=name)
    top.axhline(1.0, color="k", ls="--", lw=1, label=reference)
    top.set_xticks(range(n), labels)
    top.set_xlim(-0.6, n - 0.4)
    top.set(yscale="log" if log else "linear", ylabel=ylabel, title=title)
    top.legend(fontsize=7, ncol=3)
    for col, panel in enumerate(panels):
        ax = fig.add_subplot(2, n, n + col + 1)
        for algo in algos:
            v = curves[panel, algo].mean(axis=1)
            ax.plot(np.arange(1, len(v) + 1), v, color=_color(algo), lw=1.2,
                    ls=styles.get(algo, ("o", "-"))[1], label=algo)
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="episode", yscale="log" if log else "linear",
               title=labels[col].replace("\n", ", "),
               ylabel=f"validation cost / {reference}" if col == 0 else None)
        ax.legend(fontsize=7)
    for ax in fig.axes:  # ratios near 1 read better as plain numbers than as powers of ten
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    return fig


def _color(algo: str) -> str:
    return COLORS.get(algo.split(",")[0], "C3")
