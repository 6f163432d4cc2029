"""Reports people look at: figures and one self-contained HTML page.

:func:`write_report` takes a recording or a ``demine batch`` output directory
and writes PNG figures and ``report.html`` (the figures embedded as base64
PNG, so the page can be mailed on its own; the PNG files stay beside it):

* **radar B-scan** of each GPR stream, processed with the GPR chain of the
  detection config (default ``gpr_default``), along the path length of the
  antenna, with the alarms and their fitted diffraction hyperbolae
  ``t(s) = t_surf + sqrt(tau² + (2 max(|s - s0| - w, 0) / v)²)`` overlaid;
* **lane map** of each detector stream: the searched area, the sensor path
  coloured by the detection statistic (EMI) or the radar alarms' score, ground
  truth (found / missed, halos, clutter) and the alarms by outcome
  (:func:`demine.plots.plot_lane_map`);
* **ROC** (PD against false alarms per m²) with its 95 % Clopper–Pearson band
  (:func:`demine.plots.plot_roc`), per sensor;
* **PD by target class and by depth** as bars with their one-sided lower
  confidence bounds, and as tables;
* **searched area**: the coverage raster, its polygons and the gaps
  (:func:`demine.export.coverage`).

For a batch directory the ROC and PD tables are pooled over every recording
with ground truth, a table lists every file (failed ones with their error),
and the per-recording figures are drawn for the first ``max_files``
recordings, from each recording as it is now with the alarms of the batch: a
recording whose size or modification time is no longer what the batch read
gets a note instead.  matplotlib is needed
(``pip install 'demine[plot]'``).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import html
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

__all__ = ["bscan_figure", "coverage_figure", "lane_map_figure", "pd_figure",
           "recording_labels", "write_report"]

C0 = 299_792_458.0


def _plt() -> Any:
    from .plots import _pyplot

    plt = _pyplot()
    return plt


def _agg() -> None:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        try:
            matplotlib.use("Agg")
        except Exception:  # noqa: BLE001 - keep whatever backend is in use
            pass


# ---------------------------------------------------------------------- data


def _chain_output(path: str | Path, stream: str, chain: Any, *, chunk: int = 8192,
                  calibration: Mapping[str, Any] | None = None
                  ) -> tuple[Any, int, dict[str, Any]]:
    """(iterator of processed chunks, n frames, the stream's context) of a
    stream through a chain; ``calibration`` (stream name to profile, as for
    :func:`demine.pipeline.detect_recording`) replaces what it holds."""
    from .process import _stream_context, load_chain, load_profiles, with_profile
    from .recording import Recording

    profiles = load_profiles(calibration)
    rec = Recording(path)
    try:
        s = rec.streams[stream]
        ctx = _stream_context(s)
        if stream in profiles:
            ctx, _ = with_profile(ctx, s, *profiles[stream])
        ch = load_chain(chain)
        ch.configure(ctx)
    except BaseException:
        rec.close()
        raise
    n = len(s)

    def gen() -> Any:
        try:
            for start in range(0, n, chunk):
                d = s.read(start, min(n, start + chunk), fields=["samples"])
                out = ch.process(d["samples"])
                if out.shape[0]:
                    yield out
            out = ch.finish()
            if out.shape[0]:
                yield out
        finally:
            rec.close()

    return gen(), n, ctx


def _positions(path: str | Path, stream: str) -> dict[str, np.ndarray]:
    from .recording import Recording

    with Recording(path) as rec:
        s = rec.streams[stream]
        d = s.read(fields=["x", "y", "time"])
        attrs = {"sample_interval": s.sample_interval}
    d = {k: np.asarray(v) for k, v in d.items()}
    d.update(attrs)
    return d


def _path_length(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Length of the path up to each position; across positions that are not
    known (NaN, a fix lost) it does not grow (a gap had counted as a jump to
    the origin and back)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if not ok.any():
        return np.zeros(x.size)
    last = np.maximum.accumulate(np.where(ok, np.arange(x.size), -1))
    last[last < 0] = int(np.argmax(ok))   # (before the first known: at it)
    return np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x[last]), np.diff(y[last])))])


def emi_statistic(path: str | Path, stream: str, config: Any = None, *,
                  calibration: Mapping[str, Any] | None = None) -> np.ndarray:
    """Detection statistic of every reading of an EMI stream (the chain's last
    column); ``calibration`` maps stream names to profiles used instead of what
    the recording holds (``demine detect --calibration``)."""
    from .pipeline import load_detect_config

    cfg = load_detect_config(config)
    parts, n, _ = _chain_output(path, stream, cfg["emi"]["chain"], calibration=calibration)
    stat = np.full(n, np.nan)
    i = 0
    for out in parts:
        m = min(out.shape[0], n - i)
        stat[i:i + m] = out[:m, -1]
        i += m
    return stat


# ---------------------------------------------------------------------- figures


def bscan_figure(path: str | Path, stream: str, alarms: Mapping[str, np.ndarray] | None = None,
                 config: Any = None, *, max_panels: int = 6, min_panel: float = 4.0,
                 ds: float | None = None, label: str | None = None,
                 calibration: Mapping[str, Any] | None = None) -> Any:
    """Processed radar B-scan along the path length with alarms and fitted hyperbolae.

    The stream goes through the GPR chain of ``config`` (default
    ``gpr_default``) in chunks; traces are averaged into bins of path length
    (``ds``, default about 1 cm or what keeps 1500 bins per panel), and the
    line is cut into at most ``max_panels`` panels of equal length.

    Parameters
    ----------
    path : path
        The recording.
    stream : str
        A GPR stream of it.
    alarms : mapping of column arrays, optional
        Alarms (only those of ``stream`` are drawn); with ``two_way_time``,
        ``velocity`` (and ``width``) the fitted hyperbola is drawn.
    config : detection config, optional
    max_panels : int
        Most panels the line is cut into.
    min_panel : float
        Shortest panel (m of path): a shorter line has fewer panels.
    ds : float, optional
        Bin of path length (m).
    label : str, optional
        The recording's name in the title (default: its file name).
    calibration : mapping, optional
        Stream name to the calibration profile the alarms were detected with
        (``demine detect --calibration``): the chain and the hyperbolae's
        surface take its time zero, antenna height and frequency.

    Returns
    -------
    matplotlib Figure
    """
    from .pipeline import load_detect_config

    plt = _plt()
    cfg = load_detect_config(config)
    pos = _positions(path, stream)
    # (lazy: the chunks are read below; a profile may give the sample interval)
    parts, n, ctx = _chain_output(path, stream, cfg["gpr"]["chain"], calibration=calibration)
    dt = ctx.get("sample_interval") or pos["sample_interval"]
    if not dt:
        raise ConfigError(f"{path}: GPR stream {stream!r} has no sample interval")
    s_all = _path_length(pos["x"], pos["y"])
    total = float(s_all[-1]) if s_all.size else 0.0
    n_panels = int(min(max_panels, max(1, math.ceil(total / max(min_panel, 1e-9)))))
    panel_len = max(total / n_panels, 1e-6)
    if ds is None:
        ds = max(0.01, panel_len / 1500.0)
    nb = int(total / ds) + 1
    acc: np.ndarray | None = None
    cnt = np.zeros(nb)
    i = 0
    for out in parts:
        m = min(out.shape[0], n - i)
        b = np.minimum((s_all[i:i + m] / ds).astype(np.int64), nb - 1)
        if acc is None:
            acc = np.zeros((nb, out.shape[1]))
        np.add.at(acc, b, out[:m])
        np.add.at(cnt, b, 1)
        i += m
    if acc is None:
        raise ConfigError(f"{path}: GPR stream {stream!r} has no traces")
    img = acc / np.maximum(cnt, 1)[:, None]
    ns = img.shape[1]
    # the ground surface the detector counted apex times from: the detector
    # config's time zero and antenna height, else the stream's calibration (the
    # overlay had ignored the calibration: hyperbolae drawn 2.3 ns early on the demo)
    det = cfg["gpr"]["detector"]
    cal = ctx  # (the recording's calibration, or the profile given for the stream)

    def _given(key: str) -> float:
        v = det.get(key, cal.get(key, 0.0))
        try:
            v = float(v)
        except (TypeError, ValueError):
            return 0.0
        return v if math.isfinite(v) else 0.0

    t_surf = _given("time_zero") + 2.0 * _given("antenna_height") / C0
    clip = float(np.percentile(np.abs(img[cnt > 0]), 99)) if np.any(cnt > 0) else 1.0
    clip = clip or 1.0

    a = {} if alarms is None else {k: np.asarray(v) for k, v in alarms.items()}
    if a:
        sel = np.asarray(a.get("stream", np.full(len(a["x"]), stream))).astype(str) == stream
        a = {k: v[sel] for k, v in a.items()}
    na = len(a.get("x", ()))
    if na:
        if "s" in a and np.all(np.isfinite(np.asarray(a["s"], float))):
            s0 = np.asarray(a["s"], float)
        else:  # the trace nearest in time
            j = np.clip(np.searchsorted(pos["time"], np.asarray(a["time"], np.int64)), 0,
                        len(s_all) - 1)
            s0 = s_all[j]
    fig, axes = plt.subplots(n_panels, 1, figsize=(11, 2.6 * n_panels + 0.6), squeeze=False,
                             layout="constrained")
    t_ns = np.arange(ns) * dt * 1e9
    for k, ax in enumerate(axes[:, 0]):
        lo, hi = k * panel_len, (k + 1) * panel_len
        b0, b1 = int(lo / ds), min(nb, int(math.ceil(hi / ds)) + 1)
        ax.imshow(img[b0:b1].T, aspect="auto", cmap="gray", vmin=-clip, vmax=clip,
                  extent=(b0 * ds, b1 * ds, t_ns[-1] + dt * 1e9, 0), interpolation="nearest")
        if na:
            inside = (s0 >= lo) & (s0 < hi)
            for j in np.nonzero(inside)[0]:
                tau = float(a["two_way_time"][j]) if "two_way_time" in a else math.nan
                v = float(a["velocity"][j]) if "velocity" in a else math.nan
                w = float(a["width"][j]) if "width" in a and np.isfinite(
                    float(a["width"][j])) else 0.0
                if math.isfinite(tau) and math.isfinite(v) and v > 0:
                    ss = np.linspace(s0[j] - 0.35, s0[j] + 0.35, 141)
                    tt = t_surf + np.sqrt(tau ** 2 + (2 * np.maximum(np.abs(ss - s0[j]) - w, 0)
                                                      / v) ** 2)
                    ax.plot(ss, tt * 1e9, "-", color="tab:orange", linewidth=1.2)
                    ax.plot([s0[j]], [(t_surf + tau) * 1e9], "o", color="tab:red", markersize=5,
                            markerfacecolor="none")
                    dep = a["depth"][j] if "depth" in a else math.nan
                    ax.annotate(f"{float(dep) * 100:.0f} cm", (s0[j], (t_surf + tau) * 1e9),
                                textcoords="offset points", xytext=(4, -10), color="tab:red",
                                fontsize=7)
                else:
                    ax.axvline(s0[j], color="tab:red", linewidth=1, alpha=0.7)
        ax.set_xlim(lo, hi)
        ax.set_ylim(t_ns[-1], 0)
        ax.set_ylabel("two-way time (ns)")
    axes[-1, 0].set_xlabel("path length of the antenna (m)")
    axes[0, 0].set_title(f"{label or Path(path).name}: radar {stream!r}, {len(s_all)} traces over "
                         f"{total:.1f} m, {na} alarms (orange: fitted hyperbola)", fontsize=9)
    return fig


def lane_map_figure(lane_result: Any, path: str | Path | None = None,
                    stream: str | None = None, statistic: np.ndarray | None = None,
                    positions: Mapping[str, np.ndarray] | None = None) -> Any:
    """Lane map (:func:`demine.plots.plot_lane_map`) with the path coloured by a statistic.

    Parameters
    ----------
    lane_result : demine.evaluate.LaneResult
    path, stream : optional
        Recording and stream whose positions carry ``statistic``.
    statistic : ndarray, optional
        One value per frame of ``stream`` (e.g. :func:`emi_statistic`).
    positions : mapping, optional
        ``x``, ``y`` of the frames (read from ``path`` when not given).

    Returns
    -------
    matplotlib Figure
    """
    from .plots import plot_lane_map

    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 6.5), layout="constrained")
    plot_lane_map(lane_result, ax)
    if statistic is not None:
        if positions is None:
            positions = _positions(path, stream)  # type: ignore[arg-type]
        x, y = np.asarray(positions["x"]), np.asarray(positions["y"])
        stat = np.asarray(statistic, dtype=np.float64)
        step = max(1, x.size // 20000)
        xs, ys, st = x[::step], y[::step], stat[::step]
        ok = np.isfinite(st) & np.isfinite(xs) & np.isfinite(ys)
        if ok.any():
            from matplotlib.colors import LogNorm

            # noise-normalised statistic: ~1 on noise, tens to thousands on metal; a log
            # scale shows both the noise floor and the anomalies
            hi = max(float(np.percentile(st[ok], 99.9)), 10.0)
            sc = ax.scatter(xs[ok], ys[ok], c=np.clip(st[ok], 0.5, hi), s=2, cmap="viridis",
                            norm=LogNorm(vmin=0.5, vmax=hi), zorder=1.5, linewidths=0)
            fig.colorbar(sc, ax=ax, shrink=0.6, location="bottom", aspect=40,
                         label=f"{stream} detection statistic (noise units, log scale)")
    return fig


def coverage_figure(path: str | Path, *, stream: str | None = None,
                    label: str | None = None) -> tuple[Any, Any]:
    """The searched area of a recording: raster, polygon outlines and gaps.

    Parameters
    ----------
    path : path
        The recording.
    stream : str, optional
        The stream whose path is swept (default: as :func:`demine.export.coverage`).
    label : str, optional
        The recording's name in the title (default: its file name).

    Returns
    -------
    (matplotlib Figure, demine.export.CoverageResult)
    """
    from matplotlib.patches import Polygon

    from .export import coverage

    plt = _plt()
    cov = coverage(path, stream=stream)
    r = cov.raster
    fig, ax = plt.subplots(figsize=(6.5, 6.0), layout="constrained")
    if r.mask.size:
        ax.imshow(r.mask, origin="lower", extent=r.extent, cmap="Greens", vmin=0, vmax=1.5,
                  interpolation="nearest")
        polys = cov.polygons()
        for ring in polys[:5000]:
            ax.add_patch(Polygon(ring, closed=True, fill=False, edgecolor="tab:green",
                                 linewidth=0.3))
        for g in cov.gaps:
            ax.add_patch(Polygon([(g["xmin"], g["ymin"]), (g["xmax"], g["ymin"]),
                                  (g["xmax"], g["ymax"]), (g["xmin"], g["ymax"])],
                                 closed=True, fill=False, edgecolor="tab:red", linewidth=1.2))
        ax.set_xlim(r.extent[0], r.extent[1])
        ax.set_ylim(r.extent[2], r.extent[3])
        n_poly = len(polys)
    else:
        n_poly = 0
        ax.text(0.5, 0.5, "no positions at a valid height: coverage unknown", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    gap_txt = f", {len(cov.gaps)} gaps (red)" if cov.gaps else ", no gaps"
    area = f"searched {cov.area:.2f} m²" if r.mask.size else "searched area unknown"
    ax.set_title(f"{label or Path(path).name}: {area} "
                 f"({n_poly} polygons, footprint {r.footprint:.2f} m){gap_txt}", fontsize=9)
    return fig, cov


def pd_figure(evaluation: Any) -> Any:
    """PD by target class and by depth band, bars with their one-sided lower bound."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), layout="constrained")
    for ax, (group, title) in zip(axes, (("class", "target class"), ("depth", "depth")),
                                  strict=True):
        stats = evaluation.groups.get(group, {})
        names = [k for k, s in stats.items() if s.n_targets]
        if not names:
            ax.text(0.5, 0.5, "no targets", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"PD by {title}", fontsize=9)
            continue
        pd = np.array([stats[k].pd for k in names])
        lo = np.array([stats[k].pd_lower95 for k in names])
        xs = np.arange(len(names))
        ax.bar(xs, pd, width=0.6, color="tab:blue", alpha=0.7, label="PD")
        ax.set_xlim(-0.7, max(len(names), 4) - 0.3)
        ax.errorbar(xs, pd, yerr=[pd - lo, np.zeros_like(pd)], fmt="none", ecolor="k",
                    capsize=4, label=f"{evaluation.confidence:.0%} lower bound")
        for x, k in zip(xs, names, strict=True):
            ax.annotate(f"{stats[k].n_found}/{stats[k].n_targets}", (x, 1.02), ha="center",
                        fontsize=8)
        ax.set_xticks(xs, names, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("probability of detection")
        ax.set_title(f"PD by {title}", fontsize=9)
        ax.legend(loc="lower right", fontsize=7)
    return fig


def roc_figure(evaluations: Mapping[str, Any]) -> Any:
    """ROC with its confidence band (:func:`demine.plots.plot_roc`), one panel per sensor."""
    from .plots import plot_roc

    plt = _plt()
    groups = list(evaluations)
    fig, axes = plt.subplots(1, len(groups), figsize=(5.2 * len(groups), 4.0), squeeze=False,
                             layout="constrained")
    for ax, g in zip(axes[0], groups, strict=True):
        plot_roc(evaluations[g], ax)
        label = "every alarm (pooled)" if g == "all" else f"{g} alarms"
        ax.set_title(f"ROC, {label}", fontsize=9)
    return fig


# ---------------------------------------------------------------------- HTML


class _Page:
    def __init__(self, out: Path, title: str) -> None:
        self.out = out
        self.title = title
        self.parts: list[str] = []
        self.figures: list[Path] = []
        self.earlier = _earlier_figures(out)

    def h(self, level: int, text: str) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def p(self, text: str, cls: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.parts.append(f"<p{c}>{html.escape(text)}</p>")

    def fig(self, fig: Any, name: str, caption: str) -> None:
        plt = _plt()
        path = self.out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.figures.append(path)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.parts.append(
            f'<figure><a href="{html.escape(name)}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(name)}" title="{html.escape(name)}"></a>'
            f"<figcaption>{html.escape(caption)} <span class=file>({html.escape(name)})</span>"
            "</figcaption></figure>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = []
        for r in rows:
            cells = []
            for v in r:
                cls = ""
                if isinstance(v, tuple):
                    v, cls = v
                cells.append(f'<td class="{cls}">{html.escape(_fmt(v))}</td>')
            body.append("<tr>" + "".join(cells) + "</tr>")
        self.parts.append(f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}"
                          "</tbody></table>")

    def write(self) -> Path:
        from ._version import __version__

        now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }}
h1 {{ font-size: 1.5em; }} h2 {{ border-bottom: 1px solid #ccc; margin-top: 1.8em; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
figcaption {{ font-size: 0.9em; color: #444; }} .file {{ color: #888; }}
table {{ border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
td.bad {{ color: #b00; text-align: left; }} td.good {{ color: #070; }}
.note {{ color: #7a5200; }} .headline {{ font-size: 1.15em; }}
</style></head><body>
<h1>{html.escape(self.title)}</h1>
<p class=file>demine {html.escape(__version__)}, {now}</p>
{chr(10).join(self.parts)}
</body></html>
"""
        path = self.out / "report.html"
        path.write_text(doc, encoding="utf-8")
        # An earlier report's figures that this one did not redraw (another
        # recording's B-scan, a stream no longer there) would sit beside it as
        # if they were this report's: remove them.  Only files the earlier
        # report.html linked as its figures are touched.
        for stale in self.earlier - {q.name for q in self.figures}:
            (self.out / stale).unlink(missing_ok=True)
        return path


_FIGURE_LINK = re.compile(r'<figure><a href="([^"/\\]+\.png)">')


def _earlier_figures(out: Path) -> set[str]:
    """PNG files an earlier ``report.html`` in ``out`` linked as its figures."""
    try:
        text = (out / "report.html").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    names = {html.unescape(m) for m in _FIGURE_LINK.findall(text)}
    return {n for n in names if "/" not in n and "\\" not in n and not n.startswith(".")}


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float | np.floating):
        if not math.isfinite(float(v)):
            return "n/a"
        return f"{float(v):.3g}" if abs(float(v)) < 1000 else f"{float(v):.0f}"
    return str(v)


def _headline(page: _Page, evaluations: Mapping[str, Any]) -> None:
    rows = []
    for g, ev in evaluations.items():
        rows.append([g, ev.n_targets, ev.n_found, ev.pd, ev.pd_lower95, ev.n_alarms,
                     ev.n_false_alarms, ev.area_m2, ev.far_per_m2,
                     ev.fa_rejected_at_full_recovery])
    page.table(["evaluated alarms", "targets", "found", "PD", f"PD lower {_conf(evaluations)}",
                "alarms", "false alarms", "searched m²", "FA/m²",
                "FA rejected at full recovery"], rows)
    notes = sorted({n for ev in evaluations.values() for n in ev.notes})
    for n in notes:
        page.p("note: " + n, "note")


def _conf(evaluations: Mapping[str, Any]) -> str:
    for ev in evaluations.values():
        return f"{ev.confidence:.0%}"
    return "95%"


def _group_tables(page: _Page, evaluations: Mapping[str, Any]) -> None:
    """One table per breakdown (class, depth, size): a row per group, columns per sensor."""
    groups = list(evaluations)
    conf = _conf(evaluations)
    for group, title in (("class", "target class"), ("depth", "depth band"),
                         ("size", "size class")):
        keys: list[str] = []
        for ev in evaluations.values():
            keys.extend(k for k in ev.groups.get(group, {}) if k not in keys)
        if not keys:
            continue
        page.h(3, f"PD by {title}")
        header = [title, "targets"]
        for g in groups:
            label = "every alarm" if g == "all" else f"{g} alarms"
            header += [f"{label}: found", "PD", f"PD lower {conf}"]
        rows = []
        for k in keys:
            first = next((ev.groups[group][k] for ev in evaluations.values()
                          if k in ev.groups.get(group, {})), None)
            row: list[Any] = [k, first.n_targets if first is not None else None]
            for g in groups:
                st = evaluations[g].groups.get(group, {}).get(k)
                row += ([st.n_found, st.pd, st.pd_lower95] if st is not None
                        else [None, None, None])
            rows.append(row)
        page.table(header, rows)


def _evaluate_groups(path: Path, alarms: Mapping[str, np.ndarray], streams: Sequence[str],
                     score: str = "score", truth: Mapping[str, Any] | None = None
                     ) -> dict[str, Any]:
    from .batch import _eval_alarms
    from .evaluate import evaluate_lanes, lane_from_recording

    out = {}
    for g in ["all", *streams]:
        ln = lane_from_recording(path, alarms=_eval_alarms(alarms, score),
                                 alarm_stream=None if g == "all" else g, truth=truth)
        out[g] = evaluate_lanes([ln])
    return out


def _recording_section(page: _Page, path: Path, alarms: Mapping[str, np.ndarray],
                       config: Any, prefix: str, *, evaluations: Mapping[str, Any] | None,
                       score: str = "score", label: str | None = None,
                       calibration: Mapping[str, Any] | None = None,
                       truth: Mapping[str, Any] | None = None,
                       overlay: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """B-scans, lane maps and coverage of one recording (and its ROC when not pooled).

    ``prefix`` starts the names of its PNG files; ``label`` names the recording
    in the figures' titles (default: its file name).  ``overlay``: the alarms
    the B-scans draw, with their hyperbola fits (default ``alarms``).
    """
    import copy

    from .recording import Recording

    with Recording(path) as rec:
        kinds = {n: s.kind for n, s in rec.streams.items()}
        has_truth = rec.truth_given or truth is not None
    det = [n for n, k in kinds.items() if k in ("emi", "gpr")]
    evs = dict(evaluations) if evaluations is not None else _evaluate_groups(
        path, alarms, det, score, truth=truth)
    n_alarms = len(alarms.get("x", ()))
    for name in det:
        if kinds[name] != "gpr":
            continue
        try:
            fig = bscan_figure(path, name, alarms if overlay is None else overlay, config,
                               label=label, calibration=calibration)
        except Exception as exc:  # noqa: BLE001 - one figure must not sink the report
            page.p(f"radar B-scan of {name!r} not drawn: {type(exc).__name__}: {exc}", "note")
            continue
        page.fig(fig, f"{prefix}bscan_{name}.png",
                 f"Radar B-scan of stream {name!r} processed with the GPR chain, along the "
                 "antenna's path length; red circles are the alarms' apices with their depth, "
                 "orange curves the fitted diffraction hyperbolae.")
    for name in det:
        lr = evs[name].lanes[0] if name in evs else evs["all"].lanes[0]
        if label is not None and lr.name.startswith(path.name):
            lr = copy.copy(lr)  # (its title: "LABEL (lane id)" for "NAME (lane id)")
            lr.name = label + lr.name[len(path.name):]
        stat = None
        what = "alarms"
        if kinds[name] == "emi":
            try:
                stat = emi_statistic(path, name, config, calibration=calibration)
                what = "path coloured by the EMI detection statistic (noise units)"
            except Exception as exc:  # noqa: BLE001
                page.p(f"EMI statistic of {name!r} not computed: {exc}", "note")
        fig = lane_map_figure(lr, path, name, stat)
        page.fig(fig, f"{prefix}lane_map_{name}.png",
                 f"Lane map of the {name!r} detector: {what}; ground truth (green found, red "
                 "missed, dashed halos, grey crosses clutter) and the alarms by outcome.")
    try:
        fig, cov = coverage_figure(path, label=label)
        page.fig(fig, f"{prefix}coverage.png",
                 f"Searched area: {cov.area:.2f} m², footprint swept along the path at a valid "
                 f"height; {len(cov.gaps)} uncovered gaps flagged." if cov.raster.mask.size else
                 "Searched area unknown: no positions at a valid height.")
    except Exception as exc:  # noqa: BLE001
        page.p(f"coverage not drawn: {type(exc).__name__}: {exc}", "note")
    return {"evaluations": evs, "has_truth": has_truth, "n_alarms": n_alarms}


def write_report(source: str | Path, out_dir: str | Path, *, config: Any = None,
                 max_files: int = 12, calibration: Mapping[str, Any] | None = None,
                 truth: Any = None) -> Path:
    """Write figures and ``report.html`` for a recording or a batch output directory.

    Parameters
    ----------
    source : path
        A demine recording (its alarms are detected afresh with ``config`` so
        the radar alarms carry their hyperbola fits), or a ``demine batch``
        output directory (its alarms and pooled evaluation are used).
    out_dir : path
        Where ``report.html`` and the PNG figures go (created).
    config : detection config, optional
        Chains and detector parameters (default: the packaged defaults; a batch
        directory uses the one it was run with).
    max_files : int
        Batch directory: per-recording figures for at most this many files.
    calibration : mapping, optional
        A recording: stream name to a calibration profile used instead of what
        it holds, for detection and the figures (``demine detect
        --calibration``).  A batch directory uses the profiles it was run with.
    truth : mapping or path, optional
        A recording: ground truth kept apart from it (column mapping or CSV,
        :func:`demine.evaluate.read_truth_csv`), replacing its own.

    Returns
    -------
    Path
        ``out_dir / "report.html"``.
    """
    _plt()
    _agg()
    from .batch import resolve_config

    src = Path(source)
    out = Path(out_dir)
    if isinstance(max_files, bool) or not isinstance(max_files, int | np.integer) \
            or max_files < 0:
        raise ConfigError(f"max_files must be a whole number >= 0, got {max_files!r} "
                          "(--max-files)")
    if not src.exists():
        raise ConfigError(f"{src}: no such recording or batch directory")
    if src.is_dir() and (calibration or truth is not None):
        raise ConfigError(f"{src}: a batch directory is reported with the calibration and "
                          "truth it was run with; calibration and truth are for a "
                          "recording")
    if config is not None:
        resolve_config(config)   # (a bad config refused before any work, not per figure)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory; --out is the directory the "
                          "report and its figures are written into")
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _report(src, out, config, max_files, calibration, truth)
    except BaseException:
        # (a report that failed had left its --out behind, made and empty)
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()   # (only when empty)
        raise


def _report(src: Path, out: Path, config: Any, max_files: int,
            calibration: Mapping[str, Any] | None, truth: Any) -> Path:
    if src.is_dir():
        return _batch_report(src, out, config=config, max_files=max_files)
    if truth is not None:
        from .evaluate import file_rows, read_truth_csv

        where = truth if isinstance(truth, str | Path) else "truth"
        table = read_truth_csv(truth) if isinstance(truth, str | Path) else dict(truth)
        if "file" in table:  # (a campaign's table: this recording's rows, as evaluate's)
            mine = file_rows(table["file"], src)
            if not mine.any():
                raise ConfigError(f"{where}: no row names {src.name} in its 'file' column")
            truth = {k: np.asarray(v)[mine] for k, v in table.items()}
        else:
            truth = table
    return _file_report(src, out, config=config, calibration=calibration, truth=truth)


def _file_report(path: Path, out: Path, *, config: Any,
                 calibration: Mapping[str, Any] | None = None,
                 truth: Mapping[str, Any] | None = None) -> Path:
    from .batch import detect_file, resolve_config
    from .recording import Recording

    cfg = resolve_config(config)
    with Recording(path) as rec:
        det = [nm for nm, s in rec.streams.items() if s.kind in ("emi", "gpr")]
        has_truth = rec.truth_given or truth is not None
        table = rec.alarms
    # The alarms are the recording's own (its alarms table, as evaluate and
    # export read it: live alarms, a classifier's p_mine) unless a detection
    # config or calibration is given; the batch pipeline's own run is still
    # what the B-scans draw (its hyperbola fits are not in the table).
    stored = len(table.get("x", ())) > 0
    if stored and config is None and not calibration:
        alarms = {k: np.asarray(v) for k, v in table.items()}
        alarms["stream"] = alarms["stream"].astype(str)
        how = "from the recording's alarms table"
        detected = detect_file(path, cfg, calibration, kinds=("gpr",))   # (the B-scans')
    else:
        alarms = detected = detect_file(path, cfg, calibration)
        how = "detected with the batch pipeline" + (
            f" (its alarms table, {len(table['x'])} alarms, not used: "
            f"{'--config' if config is not None else '--calibration'} given)"
            if stored else "")
    page = _Page(out, f"demine report: {path.name}")
    n = len(alarms["x"])
    streams = sorted({str(s) for s in np.asarray(alarms["stream"]).tolist()})
    sc = np.asarray(alarms["stream"]).astype(str)
    by = ", ".join(f"{s} {int(np.sum(sc == s))}" for s in streams) or "none"
    page.p(f"Recording {path} — {n} alarms ({by}), {how}.", "headline")
    # ROC and PD first: what a reader wants to know.
    evs = _evaluate_groups(path, alarms, det, truth=truth)
    if has_truth:
        page.h(2, "Detection performance")
        _headline(page, evs)
        page.fig(roc_figure(evs), "roc.png",
                 "ROC: probability of detection against false alarms per m² of searched "
                 "ground, over the alarm score threshold; shaded: 95 % Clopper–Pearson band.")
        page.fig(pd_figure(evs["all"]), "pd_by_class_depth.png",
                 "PD by target class and depth band (every alarm), with the one-sided "
                 "lower confidence bound; n found / n present above each bar.")
        _group_tables(page, evs)
    else:
        page.p("The recording has no ground truth: PD and false alarms cannot be evaluated.",
               "note")
    page.h(2, "Sensors")
    _recording_section(page, path, alarms, cfg, "", evaluations=evs, calibration=calibration,
                       overlay=detected)
    page.h(2, "Alarms")
    _alarm_table(page, alarms)
    return page.write()


def _alarm_table(page: _Page, alarms: Mapping[str, np.ndarray], limit: int = 200) -> None:
    n = len(alarms.get("x", ()))
    cols = [c for c in ("file_name", "stream", "x", "y", "lon", "lat", "depth", "score",
                        "p_mine", "outcome") if c in alarms]
    # positions to the mm and 1e-7 degrees (about 1 cm), not to 3 significant
    # digits (x of 250.30 m had read 250, a longitude of -70.2500432 -70.3)
    fixed = {"x": 3, "y": 3, "depth": 3, "lon": 7, "lat": 7}

    def cell(c: str, v: Any) -> Any:
        if c in fixed and isinstance(v, float | np.floating) and math.isfinite(float(v)):
            return f"{float(v):.{fixed[c]}f}"
        return v

    rows = [[cell(c, alarms[c][i]) for c in cols] for i in range(min(n, limit))]
    page.table(cols, rows)
    if n > limit:
        page.p(f"… {n - limit} more alarms in the alarm table.")


def recording_labels(paths: Sequence[str | Path]) -> list[str]:
    """Names that tell recordings apart: the file name, with as many of its parent
    directories as it takes to tell it from the others of the same name.

    ``/d/site-a/day1/lane.h5`` and ``/d/site-b/day1/lane.h5`` are
    ``site-a/day1/lane.h5`` and ``site-b/day1/lane.h5``; a name no other
    recording has stays as it is.  Each label is the shortest tail of its path
    that no other path ends with, so no two labels are the same (given
    distinct paths).

    Parameters
    ----------
    paths : sequence of str or Path
        The recordings (absolute paths, as a batch output lists them).

    Returns
    -------
    list of str
        One label per path, in order (``/`` between directories).
    """
    parts = [Path(p).parts for p in paths]
    labels = []
    for i, pp in enumerate(parts):
        others = [q for j, q in enumerate(parts) if j != i and q and pp and q[-1] == pp[-1]]
        k = 1
        while k < len(pp) and any(q[-k:] == pp[-k:] for q in others):
            k += 1
        labels.append(Path(*pp[-k:]).as_posix() if pp else str(paths[i]))
    return labels


def _changed_since_batch(row: Mapping[str, Any], st: os.stat_result) -> str | None:
    """How a recording differs from what a ``demine batch`` run read of it.

    Parameters
    ----------
    row : mapping
        The recording's row of the batch's ``files.parquet``, with ``size``
        and ``mtime_ns`` (the file's size and modification time in ns when
        its job began).
    st : os.stat_result
        The recording as it is now.

    Returns
    -------
    str or None
        ``""`` when its size and modification time are those the batch read,
        what changed (``"modified …; same size"``) when they are not, and None
        when the batch did not record them (a batch by an earlier demine).
    """
    size, mtime = row.get("size"), row.get("mtime_ns")
    if size is None or mtime is None:
        return None
    size, mtime = int(size), int(mtime)
    if st.st_size == size and st.st_mtime_ns == mtime:
        return ""

    def when(ns: int, fine: bool) -> str:
        t = _dt.datetime.fromtimestamp(ns // 1_000_000_000, _dt.UTC)
        return t.strftime("%Y-%m-%d %H:%M:%S") + (f".{ns % 1_000_000_000:09d}" if fine
                                                   else "") + " UTC"

    if st.st_mtime_ns == mtime:
        parts = ["same modification time"]
    else:
        fine = st.st_mtime_ns // 1_000_000_000 == mtime // 1_000_000_000
        parts = [f"modified {when(st.st_mtime_ns, fine)} (the batch read it as of "
                 f"{when(mtime, fine)})"]
    parts.append("same size" if st.st_size == size
                 else f"{st.st_size} bytes (the batch read {size})")
    return "; ".join(parts)


def _slug(label: str, limit: int = 60) -> str:
    """A label as a piece of a file name: ``site-a/day1/lane.h5`` -> ``site-a_day1_lane``."""
    stem = label[:-len(Path(label).suffix)] if Path(label).suffix else label
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", stem).strip("_.")
    return slug[-limit:] or "recording"


def _batch_report(src: Path, out: Path, *, config: Any, max_files: int) -> Path:
    from .batch import campaign_file_dir, load_campaign, read_parquet
    from .evaluate import evaluate_lanes

    camp = load_campaign(src)
    summary = camp["summary"]
    cfg = config if config is not None else summary.get("config")
    page = _Page(out, f"demine campaign report: {src.name}")
    files = camp["files"]
    n_failed = sum(1 for f in files if f["status"] == "failed")
    page.p(f"Batch output {src}: {len(files)} recordings ({n_failed} failed), "
           f"{summary.get('n_alarms', 0)} alarms.", "headline")
    evs = {g: evaluate_lanes(lns) for g, lns in camp["lanes"].items()}
    if evs:
        page.h(2, "Detection performance, pooled over the recordings with ground truth")
        _headline(page, evs)
        page.fig(roc_figure(evs), "roc.png",
                 "Pooled ROC: probability of detection against false alarms per m² of searched "
                 "ground, over the alarm score threshold; shaded: 95 % Clopper–Pearson band.")
        page.fig(pd_figure(evs["all"] if "all" in evs else next(iter(evs.values()))),
                 "pd_by_class_depth.png",
                 "Pooled PD by target class and depth band, with the one-sided lower "
                 "confidence bound; n found / n present above each bar.")
        _group_tables(page, evs)
    else:
        page.p("No recording with ground truth: PD and false alarms are not evaluated.", "note")
    page.h(2, "Recordings")
    labels = recording_labels([f["file"] for f in files])
    rows = []
    for f, label in zip(files, labels, strict=True):
        status = (f["status"], "bad" if f["status"] == "failed" else "good")
        by = f.get("alarms_by_stream") or ""
        try:
            by = ", ".join(f"{k} {v}" for k, v in json.loads(by).items()) if by else ""
        except ValueError:
            pass
        rows.append([label, status, f.get("n_alarms"), by, f.get("n_targets"),
                     f.get("n_found"), f.get("pd"), f.get("far_per_m2"), f.get("area_m2"),
                     f.get("seconds"), (f.get("error") or "", "bad")])
    page.table(["file", "status", "alarms", "by sensor", "targets", "found", "PD", "FA/m²",
                "searched m²", "seconds", "error"], rows)
    done = [(f, label) for f, label in zip(files, labels, strict=True)
            if f["status"] == "done"]
    for k, (f, label) in enumerate(done[:max_files]):
        rec = Path(f["file"])
        page.h(2, label)
        if not rec.exists():
            page.p(f"{rec}: no longer there; per-recording figures skipped.", "note")
            continue
        if label != rec.name:  # (two recordings of one name: where this one is)
            page.p(f"Recording {rec}", "file")
        changed = _changed_since_batch(f, rec.stat())
        if changed:  # (figures of it as it is now with the alarms of it as it was: no)
            page.p(f"{label} ({rec}) changed since the batch: {changed} — per-recording "
                   "figures skipped, as they would draw the recording as it is now with the "
                   "alarms the batch found in it then; re-run demine batch to update them.",
                   "note")
            continue
        if changed is None:
            page.p(f"{label}: the batch did not record the size and modification time of "
                   f"{rec} (a batch by an earlier demine), so whether it has changed since "
                   "cannot be checked: these figures draw it as it is now with the "
                   "alarms the batch found then. Re-run demine batch to record them.", "note")
        fdir = campaign_file_dir(src, f)   # (this campaign's results of it, or refused)
        t = read_parquet(fdir / "alarms.parquet")
        given = None
        if summary.get("truth"):  # (a blind trial's: the truth the file's job was given)
            with np.load(fdir / "lane.npz", allow_pickle=False) as z:
                given = {k[len("truth__"):]: z[k] for k in z.files if k.startswith("truth__")}
        a = {c: t.column(c).to_numpy(zero_copy_only=False) for c in t.column_names}
        try:
            # (the number keeps the names apart, the label says whose figures they are)
            _recording_section(page, rec, a, cfg, f"f{k:03d}_{_slug(label)}_",
                               evaluations=None, score=summary.get("score", "score"),
                               label=label, calibration=summary.get("calibration"),
                               truth=given)
        except Exception as exc:  # noqa: BLE001 - one recording must not sink the report
            page.p(f"figures of {label} not drawn: {type(exc).__name__}: {exc}", "note")
    if len(done) > max_files:
        page.p(f"Per-recording figures shown for the first {max_files} of {len(done)} "
               "recordings (--max-files).")
    return page.write()
