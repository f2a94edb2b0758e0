"""Plots for the CLI: the training curve (PNG bytes, stored inside the bundle) and eval trajectories.

matplotlib's object-oriented API on the Agg canvas, no pyplot: no GUI backend, no global figure
state, so a figure can be rendered from any thread and importing this module is cheap (matplotlib
itself is imported on first use; `warm_up()` does that ahead of time, e.g. in a background thread
while training runs, because importing matplotlib takes about a second on a laptop).
"""
from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

from .fsutil import atomic_write

DPI = 100
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MOTOR_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def _figure(width: float, height: float, **adjust):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Fixed margins, not constrained layout: the layout solver doubles the render time, and the
    # training curve is drawn inside the user's time budget.
    fig = Figure(figsize=(width, height), dpi=DPI)
    if adjust:
        fig.subplots_adjust(**adjust)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def warm_up() -> None:
    """Import matplotlib and draw a throw-away training curve (fonts, log axes, twin axes), so the
    real one, drawn inside the training budget, takes the fast path."""
    fake = [{"env_steps": 1e5 * (i + 1), "elapsed_s": 5.0 + i, "mean_return": 10.0 * i, "eval_survival_rate": 0.5,
             "eval_final_error_median_m": 0.1 / (i + 1), "eval_tracking_rmse_m": 0.2, "best": True} for i in range(3)]
    training_curve_png(fake, title="warm-up", budget_s=1.0)


def _num(v) -> float:
    """History/summary values may be None (JSON null) or inf (a crashed evaluation): plot those as gaps."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _col(history: Sequence[dict], key: str) -> list[float]:
    return [_num(h.get(key)) for h in history]


def _log_if_positive(ax, values: Iterable[float]) -> None:
    if any(v > 0 for v in values if not math.isnan(v)):
        ax.set_yscale("log")


def training_curve_png(history: Sequence[dict], *, title: str = "", budget_s: float | None = None) -> bytes:
    """PNG bytes of the training curve: mean return, and eval error with survival on a second axis,
    against env steps (bottom axis) and seconds since process start (top axis)."""
    if not history:
        raise ValueError("training_curve_png: empty history")
    import numpy as np

    steps = np.asarray(_col(history, "env_steps"))
    secs = np.asarray(_col(history, "elapsed_s"))
    ret = _col(history, "mean_return")
    median = _col(history, "eval_final_error_median_m")
    rmse = _col(history, "eval_tracking_rmse_m") if any("eval_tracking_rmse_m" in h for h in history) else None
    surv = [100.0 * v for v in _col(history, "eval_survival_rate")]
    best = [s for s, h in zip(steps, history) if h.get("best")]

    fig = _figure(10.0, 4.0, left=0.07, right=0.93, bottom=0.12, top=0.80, wspace=0.3)
    ax_ret, ax_err = fig.subplots(1, 2)
    ax_ret.plot(steps, ret, "o-", ms=3, color="tab:blue")
    ax_ret.set_xlabel("env steps")
    ax_ret.set_ylabel("mean episode return (train)")
    ax_ret.grid(alpha=0.3)

    ax_err.plot(steps, median, "o-", ms=3, color="tab:red", label="final error, median")
    if rmse is not None:
        ax_err.plot(steps, rmse, "s-", ms=3, color="tab:purple", label="tracking RMSE")
    _log_if_positive(ax_err, median + (rmse or []))
    ax_err.set_xlabel("env steps")
    ax_err.set_ylabel("eval position error [m]")
    ax_err.grid(alpha=0.3, which="both")
    ax_surv = ax_err.twinx()
    ax_surv.plot(steps, surv, "^--", ms=3, color="tab:green", label="survival")
    ax_surv.set_ylim(-2, 102)
    ax_surv.set_ylabel("eval survival [%]", color="tab:green")
    lines = ax_err.get_lines() + ax_surv.get_lines()
    ax_err.legend(lines, [ln.get_label() for ln in lines], loc="upper right", fontsize=8)
    if best:
        for ax in (ax_ret, ax_err):
            ax.axvline(best[-1], color="0.5", lw=0.8, ls=":")
        ax_err.annotate("best", (best[-1], 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                        ha="right", va="top", color="0.4")

    ok = ~(np.isnan(steps) | np.isnan(secs))
    if ok.sum() >= 2 and np.all(np.diff(steps[ok]) > 0):
        s, t = steps[ok], secs[ok]
        for ax in (ax_ret, ax_err):
            top = ax.secondary_xaxis("top", functions=(lambda x: np.interp(x, s, t), lambda y: np.interp(y, t, s)))
            top.set_xlabel("seconds since process start", fontsize=8)
            top.tick_params(labelsize=8)
    if budget_s is not None:
        title = f"{title}  (budget {budget_s:g} s)" if title else f"budget {budget_s:g} s"
    if title:
        fig.suptitle(title, fontsize=10)
    return _png(fig)


def _cut(err_axes, bound: float | None) -> int:
    """Index one past the step where an episode left the termination box (or went non-finite)."""
    import numpy as np

    bad = ~np.all(np.isfinite(err_axes), axis=-1)
    if bound is not None:
        bad |= np.any(np.abs(np.nan_to_num(err_axes, nan=np.inf)) > bound, axis=-1)
    idx = np.flatnonzero(bad)
    return int(idx[0]) + 1 if len(idx) else len(err_axes)


def eval_trajectories_png(rec: dict, path: str | os.PathLike, *, title: str = "", termination_bound: float | None = None,
                          hover_action: float | None = None, max_episodes: int = 4) -> Path:
    """Write a PNG of recorded eval episodes: x-y path and z over time against the reference, the
    position error, and the motor commands of the first surviving episode. Episodes are cut where they
    crashed (left the termination box), marked with an x. Written atomically; returns the path."""
    import numpy as np

    pos, ref, act = (np.asarray(rec[k], dtype=np.float64) for k in ("pos", "ref", "action"))
    dt = float(rec["dt"])
    n = min(pos.shape[1], max_episodes)
    if n == 0:
        raise ValueError("eval_trajectories_png: no recorded episodes")
    t = dt * np.arange(1, pos.shape[0] + 1)

    fig = _figure(11.0, 7.5, left=0.07, right=0.98, bottom=0.07, top=0.91, wspace=0.22, hspace=0.32)
    (ax_xy, ax_z), (ax_err, ax_m) = fig.subplots(2, 2)
    colors = [f"C{i}" for i in range(n)]
    for i, c in enumerate(colors):
        end = _cut(pos[:, i] - ref[:, i], termination_bound)
        p, r = pos[:end, i], ref[:end, i]
        crashed = end < pos.shape[0]
        if np.ptp(r[:, :2], axis=0).max() < 1e-9:  # hover: the reference is a point
            ax_xy.plot(r[0, 0], r[0, 1], "+", ms=14, mew=2, color="k", label="reference" if i == 0 else None)
        else:
            ax_xy.plot(r[:, 0], r[:, 1], ls="--", lw=1.0, color="0.5", label="reference" if i == 0 else None)
        ax_xy.plot(p[:, 0], p[:, 1], color=c, lw=1.2, label=f"episode {i}" + (" (crashed)" if crashed else ""))
        ax_xy.plot(p[0, 0], p[0, 1], "o", ms=4, color=c)
        ax_z.plot(t[:end], r[:, 2], ls="--", lw=1.0, color="0.5", label="reference" if i == 0 else None)
        ax_z.plot(t[:end], p[:, 2], color=c, lw=1.2)
        err = np.linalg.norm(p - r, axis=-1)
        ax_err.plot(t[:end], err, color=c, lw=1.2)
        if crashed:
            ax_xy.plot(p[-1, 0], p[-1, 1], "x", ms=8, mew=2, color=c)
            ax_z.plot(t[end - 1], p[-1, 2], "x", ms=8, mew=2, color=c)
            ax_err.plot(t[end - 1], err[-1], "x", ms=8, mew=2, color=c)
    ax_xy.set_xlabel("x [m]")
    ax_xy.set_ylabel("y [m]")
    ax_xy.set_aspect("equal", adjustable="datalim")
    ax_xy.set_title("x-y (o start, x crash)", fontsize=9)
    ax_xy.legend(fontsize=7, loc="best")
    ax_z.set_xlabel("time [s]")
    ax_z.set_ylabel("z [m]")
    ax_z.set_title("altitude", fontsize=9)
    ax_err.set_xlabel("time [s]")
    ax_err.set_ylabel("|p - p_ref| [m]")
    ax_err.set_title("position error", fontsize=9)
    ax_err.set_yscale("log")
    ends = [_cut(pos[:, i] - ref[:, i], termination_bound) for i in range(n)]
    shown = next((i for i, e in enumerate(ends) if e == pos.shape[0]), 0)  # the first survivor, if any
    for k in range(act.shape[-1]):
        ax_m.plot(t[:ends[shown]], act[:ends[shown], shown, k], lw=1.0, color=MOTOR_COLORS[k % 4], label=f"M{k + 1}")
    if hover_action is not None:
        ax_m.axhline(hover_action, color="0.5", ls="--", lw=0.8, label="hover")
    ax_m.set_ylim(-1.05, 1.05)
    ax_m.set_xlabel("time [s]")
    ax_m.set_ylabel("motor command [-1, 1]")
    ax_m.set_title(f"motor commands, episode {shown}", fontsize=9)
    ax_m.legend(fontsize=7, ncol=5, loc="lower right")
    for ax in (ax_z, ax_err, ax_m):
        ax.set_xlim(0.0, t[-1])
    for ax in (ax_xy, ax_z, ax_err, ax_m):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    data = _png(fig)

    return atomic_write(path, data)


def flight_log_png(log: dict, path: str | os.PathLike, *, title: str = "") -> Path:
    """Any vehicle's flight log (edgectl.runtime.flightlog's columns, from CSV or MCAP): position vs reference,
    the commands sent, the safety margin, the path seen from above; backup ticks shaded, controller switches and
    link events marked."""
    import numpy as np

    fig = _figure(12.0, 7.5, left=0.08, right=0.98, bottom=0.08, top=0.92, hspace=0.35, wspace=0.4)
    t = np.asarray(log["t"], float)
    gs = fig.add_gridspec(3, 3)
    axes = [fig.add_subplot(gs[0, :2])]
    axes += [fig.add_subplot(gs[i, :2], sharex=axes[0]) for i in (1, 2)]
    ax_xy = fig.add_subplot(gs[:, 2])

    def col(name):
        return np.asarray(log[name], float)

    for name, ref, color in (("x", "ref_x", "C0"), ("y", "ref_y", "C1"), ("z", "ref_z", "C2")):
        axes[0].plot(t, col(name), color=color, label=name)
        if np.isfinite(col(ref)).any():
            axes[0].plot(t, col(ref), color=color, ls="--", lw=0.8)
    axes[0].set_ylabel("position [m]\n(dashed: reference)")
    axes[0].legend(loc="upper right", ncol=3, fontsize=8)
    used = [i for i in range(1, 5) if np.isfinite(col(f"a{i}")).any()]
    for i in used:
        axes[1].plot(t, col(f"a{i}"), lw=0.8, label=f"a{i}")
    axes[1].set_ylabel("command sent [-1, 1]")
    if used:
        axes[1].legend(loc="upper right", ncol=4, fontsize=8)
    axes[2].plot(t, col("robustness"), color="k", lw=0.9)
    axes[2].axhline(0.0, color="r", lw=0.8)
    axes[2].set_ylabel("safety margin\n(> 0: safe)")
    axes[2].set_xlabel("time [s]")
    ax_xy.plot(col("x"), col("y"), color="C0", lw=1.0, label="path")
    if np.isfinite(col("ref_x")).any():
        ax_xy.plot(col("ref_x"), col("ref_y"), "+", color="0.4", ms=6, label="reference")
    ok = np.isfinite(col("x")) & np.isfinite(col("y"))
    if ok.any():
        ax_xy.plot(col("x")[ok][0], col("y")[ok][0], "o", color="C0", ms=4)
    ax_xy.set_xlabel("x [m]")
    ax_xy.set_ylabel("y [m]")
    ax_xy.set_aspect("equal", adjustable="datalim")
    ax_xy.set_title("from above (o: start)", fontsize=9)
    ax_xy.legend(fontsize=7, loc="best")
    ax_xy.grid(alpha=0.3)
    backup = np.asarray([c != "nominal" for c in log["controller"]], bool)
    for ax in axes:
        ax.grid(alpha=0.3)
        if backup.any():
            ax.fill_between(t, 0, 1, where=backup, transform=ax.get_xaxis_transform(), color="orange", alpha=0.2, lw=0)
    for tt, ev in zip(t, log["event"]):
        if ev:
            axes[0].axvline(tt, color="orange", lw=0.8)
            axes[0].annotate(str(ev)[:40], (tt, 0.98), xycoords=("data", "axes fraction"), fontsize=6, rotation=90, va="top")
    for tt, ev in zip(t, log.get("link", ())):
        if ev:
            axes[2].axvline(tt, color="0.5", lw=0.8, ls=":")
            axes[2].annotate(f"link: {str(ev)[:30]}", (tt, 0.02), xycoords=("data", "axes fraction"), fontsize=6,
                             rotation=90, va="bottom")
    fig.suptitle(title or "flight log", fontsize=10)
    fig.text(0.01, 0.005, "orange: backup or stopped in control; dotted: link events", fontsize=7, color="0.4")
    out = Path(path)
    out.write_bytes(_png(fig))
    return out
