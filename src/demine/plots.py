"""Plots for people: the ROC of an evaluation and a lane map.

matplotlib is an optional dependency (``pip install 'demine[plot]'``); these
functions import it when called and raise :class:`ImportError` with the
install command when it is missing.  They draw on a given ``Axes`` or make a
new figure (non-interactive backend friendly) and return the ``Axes``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .evaluate import Evaluation, LaneResult

__all__ = ["check_figure_path", "plot_lane_map", "plot_roc", "save_figure"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "demine plots need matplotlib, which is not installed: "
            "pip install 'demine[plot]' (or pip install matplotlib)"
        ) from exc
    return plt


def _axes(ax: Any, figsize: tuple[float, float]) -> Any:
    if ax is not None:
        return ax
    plt = _pyplot()
    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def plot_roc(result: Evaluation, ax: Any = None, *, far_max: float | None = None,
             levels: bool = True) -> Any:
    """Plot PD against false alarms per m², with its confidence band.

    The curve is drawn as steps (each point is an achievable threshold); the
    shaded band is the two-sided 95 % Clopper–Pearson interval of PD at each
    point; dotted verticals mark the FA/m² levels of ``result.pd_at_far``.

    Parameters
    ----------
    result : Evaluation
    ax : matplotlib Axes, optional
    far_max : float, optional
        Right limit of the FA/m² axis (default: a little past the last point
        or the largest level).
    levels : bool
        Mark the ``pd_at_far`` levels.

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax, (5.5, 4.0))
    roc = result.roc
    far, pd = roc.far, roc.pd
    if not np.all(np.isfinite(far)) or not np.all(np.isfinite(pd)):
        ax.text(0.5, 0.5, "ROC undefined\n(" + "; ".join(result.notes) + ")",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("false alarms per m²")
        ax.set_ylabel("probability of detection")
        return ax
    right = far_max
    if right is None:
        right = max([float(far[-1]) * 1.1, *(float(k) * 1.1 for k in result.pd_at_far)]
                    + [1e-3])
    # Carry the last operating point to the right edge so the curve reads as a step.
    fx = np.append(far, max(right, float(far[-1])))
    ax.fill_between(fx, np.append(roc.pd_lo, roc.pd_lo[-1]),
                    np.append(roc.pd_hi, roc.pd_hi[-1]), step="post", alpha=0.25,
                    color="C0", label="95 % Clopper–Pearson band")
    ax.step(fx, np.append(pd, pd[-1]), where="post", color="C0",
            label=f"ROC (n = {roc.n_targets} targets)")
    if levels:
        for lvl, r in result.pd_at_far.items():
            ax.axvline(lvl, color="0.5", linestyle=":", linewidth=1)
            if np.isfinite(r["pd"]):
                ax.plot([lvl], [r["pd"]], "o", color="C3", markersize=4)
                ax.annotate(f"PD {r['pd']:.2f} at {lvl:g}", (lvl, r["pd"]),
                            textcoords="offset points", xytext=(4, -12), fontsize=8)
    ax.set_xlim(0, right)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false alarms per m²")
    ax.set_ylabel("probability of detection")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_lane_map(lane: LaneResult, ax: Any = None, *, halos: bool = True) -> Any:
    """Map of one lane: searched area, sensor path, ground truth and alarms.

    Targets found are green, missed red, outside the searched area grey;
    clutter items are grey crosses; each target's halo is drawn as a circle.
    Alarms: hits blue plus, false alarms orange x, alarms outside the
    searched area or on unsearched targets grey dots.

    Parameters
    ----------
    lane : LaneResult
        One entry of ``Evaluation.lanes``.
    ax : matplotlib Axes, optional
    halos : bool
        Draw the halo circles.

    Returns
    -------
    matplotlib Axes
    """
    ax = _axes(ax, (6.0, 6.0))
    from matplotlib.patches import Circle

    cov = lane.coverage
    if cov is not None and cov.mask.size:
        ax.imshow(cov.mask, origin="lower", extent=cov.extent, cmap="Greys", vmin=0, vmax=4,
                  interpolation="nearest", alpha=0.6, zorder=0)
    for i, p in enumerate(lane.path):
        ax.plot(p[:, 0], p[:, 1], "-", color="0.6", linewidth=0.4, zorder=1,
                label="sensor path" if i == 0 else None)
    found = lane.found_by >= 0
    groups = [
        (lane.counted & found, "tab:green", "target found"),
        (lane.counted & ~found, "tab:red", "target missed"),
        (lane.is_target & ~lane.counted, "0.5", "target not searched"),
    ]
    for sel, color, label in groups:
        if sel.any():
            ax.plot(lane.truth_x[sel], lane.truth_y[sel], "o", color=color, markersize=6,
                    markerfacecolor="none", label=label, zorder=3)
            if halos:
                for x, y, r in zip(lane.truth_x[sel], lane.truth_y[sel], lane.halo[sel],
                                   strict=True):
                    ax.add_patch(Circle((x, y), r, fill=False, color=color, linewidth=0.6,
                                        linestyle="--", zorder=2))
    clutter = ~lane.is_target
    if clutter.any():
        ax.plot(lane.truth_x[clutter], lane.truth_y[clutter], "x", color="0.4", markersize=4,
                label="clutter", zorder=3)
    kinds = [("hit", "+", "tab:blue", "alarm: hit"),
             ("false", "x", "tab:orange", "false alarm"),
             ("clutter", "x", "tab:brown", "false alarm on clutter"),
             ("outside", ".", "0.5", "alarm outside area"),
             ("ignored", ".", "0.3", "alarm on unsearched target")]
    for kind, marker, color, label in kinds:
        sel = lane.alarm_kind == kind
        if sel.any():
            ax.plot(lane.alarm_x[sel], lane.alarm_y[sel], marker, color=color, markersize=7,
                    label=label, zorder=4)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    title = lane.name or "lane"
    pd = f"{lane.n_found}/{lane.n_targets} found" if lane.n_targets else "no targets"
    ax.set_title(f"{title}: {pd}, {lane.n_false_alarms} false alarms", fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    return ax


def check_figure_path(path: str | Path, option: str = "figure") -> Path:
    """``path`` if matplotlib can save a figure in the format its suffix names.

    A path without a suffix is saved as PNG.  Call it before the work that
    leads to the figure, so that a mistyped suffix fails at once.

    Raises
    ------
    ConfigError
        The suffix is not a format matplotlib writes; the message names
        ``option`` and the supported suffixes.
    """
    from .errors import ConfigError

    _pyplot()  # the install hint when matplotlib is missing
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    ext = path.suffix.lstrip(".").lower()
    supported = sorted(FigureCanvasBase.get_supported_filetypes())
    if ext and ext not in supported:
        raise ConfigError(f"{option} {str(path)!r}: cannot save a figure as {path.suffix!r}; "
                          f"use one of {', '.join('.' + e for e in supported)}")
    return path


def save_figure(ax: Any, path: str | Path, *, dpi: int = 150) -> Path:
    """Save the figure of ``ax`` to ``path`` and close it.

    Parameters
    ----------
    ax : matplotlib Axes
    path : str or Path
    dpi : int

    Returns
    -------
    Path
    """
    plt = _pyplot()
    fig = ax.figure
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
