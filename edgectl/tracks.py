"""Race tracks (numpy only, shared by training and the runtime): a CSV demonstration lap
(hardware/tracks/README.md) is resampled by arc length, smoothed (the log has localization noise and
10 Hz corners), and resampled again at `TRACK_SPACING`. The drivable corridor is every point within
`half_width` of that line. Checkpoints are spaced evenly in arc length along the lap.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

TRACK_SPACING = 0.1  # m between resampled lap points (one step at top speed covers about one)
SMOOTHING = 0.25  # m, standard deviation of the Gaussian smoothing of the demonstration lap
TRACKS_DIR = Path(str(resources.files("edgectl") / "hardware" / "tracks"))  # package data (edgectl.platforms)
_HALF_WIDTH_RE = re.compile(r"^#\s*half_width\s*[:=]\s*([^\s]+)\s*(m)?\s*$")


class TrackError(ValueError):
    pass


@dataclass(frozen=True)
class Track:
    name: str
    path: str
    raw: bytes = field(repr=False)
    half_width: float  # m
    points: np.ndarray = field(repr=False)  # (N, 2) m, world, resampled demonstration lap
    heading: np.ndarray = field(repr=False)  # (N,) rad, direction of travel
    curvature: np.ndarray = field(repr=False)  # (N,) 1/m, + = turning left
    length: float  # m
    spacing: float  # m between points (length / N)
    demo_lap_time: float | None  # s, from the CSV's t column

    @property
    def n(self) -> int:
        return len(self.points)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def resolve_track(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".csv" or p.exists():
        return p
    candidate = TRACKS_DIR / f"{name_or_path}.csv"
    if candidate.exists():
        return candidate
    known = sorted(f.stem for f in TRACKS_DIR.glob("*.csv"))
    raise TrackError(f"unknown track {str(name_or_path)!r}: no file {candidate}; shipped tracks: {', '.join(known) or 'none'}")


def load_track(name_or_path: str | Path) -> Track:
    path = resolve_track(name_or_path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise TrackError(f"{path}: cannot read track file ({e.strerror})") from None
    return parse_track(raw, path)


def parse_track(raw: bytes, path: str | Path) -> Track:
    fname = str(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TrackError(f"{fname}: not UTF-8 text ({e})") from None
    half_width, rows = None, []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            m = _HALF_WIDTH_RE.match(s)
            if m:
                try:
                    half_width = float(m.group(1))
                except ValueError:
                    raise TrackError(f"{fname}: field half_width: expected a number of metres, got {m.group(1)!r}") from None
        elif s:
            rows.append(s)
    if half_width is None:
        raise TrackError(f"{fname}: missing header comment '# half_width: <metres>' (the corridor's half width)")
    if not (math.isfinite(half_width) and half_width > 0):
        raise TrackError(f"{fname}: field half_width: expected a positive number of metres, got {half_width}")
    reader = csv.reader(io.StringIO("\n".join(rows)))
    header = [h.strip() for h in next(reader, [])]
    if header[:2] != ["x", "y"] or header[2:] not in ([], ["t"]):
        raise TrackError(f"{fname}: header row: expected 'x,y' or 'x,y,t', got {','.join(header)!r}")
    data = []
    for i, r in enumerate(reader, start=2):
        try:
            vals = [float(v) for v in r]
        except ValueError:
            raise TrackError(f"{fname}: data row {i}: expected numbers, got {','.join(r)!r}") from None
        if len(vals) != len(header) or not all(math.isfinite(v) for v in vals):
            raise TrackError(f"{fname}: data row {i}: expected {len(header)} finite numbers ({','.join(header)}), got {','.join(r)!r}")
        data.append(vals)
    if len(data) < 8:
        raise TrackError(f"{fname}: {len(data)} points; a demonstration lap needs at least 8")
    a = np.asarray(data, np.float64)
    demo_time = None
    if len(header) == 3:
        t = a[:, 2]
        if np.any(np.diff(t) <= 0):
            raise TrackError(f"{fname}: column t: times must increase, row {int(np.argmax(np.diff(t) <= 0)) + 3} does not")
        # The lap closes from the last point back to the first: add one mean interval.
        demo_time = float(t[-1] - t[0] + np.mean(np.diff(t)))
    points, heading, curvature, spacing = _process_lap(a[:, :2], fname)
    length = spacing * len(points)
    _check_corridor(points, curvature, spacing, half_width, fname)
    return Track(name=Path(fname).stem, path=fname, raw=raw, half_width=half_width, points=points,
                 heading=heading, curvature=curvature, length=length, spacing=spacing, demo_lap_time=demo_time)


def _resample(p: np.ndarray, step: float) -> np.ndarray:
    """Closed polyline -> points evenly spaced in arc length (about `step` apart), from p[0]."""
    q = np.vstack([p, p[:1]])
    seg = np.hypot(*np.diff(q, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(round(s[-1] / step)), 8)
    u = np.arange(n) * (s[-1] / n)
    return np.stack([np.interp(u, s, q[:, 0]), np.interp(u, s, q[:, 1])], axis=1)


def _process_lap(p: np.ndarray, fname: str):
    if np.hypot(*(p[-1] - p[0])) < 1e-6:  # a lap written with its first point repeated at the end
        p = p[:-1]
    seg = np.hypot(*np.diff(np.vstack([p, p[:1]]), axis=0).T)
    if np.any(seg < 1e-9):
        raise TrackError(f"{fname}: data row {int(np.argmax(seg < 1e-9)) + 3}: repeats the previous point")
    fine = _resample(p, 0.02)
    # Circular Gaussian smoothing (FFT): removes localization noise, keeps the corners' shape.
    n = len(fine)
    length = float(np.sum(np.hypot(*np.diff(np.vstack([fine, fine[:1]]), axis=0).T)))
    freq = np.fft.rfftfreq(n, d=length / n)
    gain = np.exp(-0.5 * (2 * np.pi * freq * SMOOTHING) ** 2)
    smooth = np.stack([np.fft.irfft(np.fft.rfft(fine[:, k]) * gain, n) for k in range(2)], axis=1)
    pts = _resample(smooth, TRACK_SPACING)
    nxt, prv = np.roll(pts, -1, 0), np.roll(pts, 1, 0)
    spacing = float(np.mean(np.hypot(*(nxt - pts).T)))
    heading = np.arctan2(nxt[:, 1] - prv[:, 1], nxt[:, 0] - prv[:, 0])
    dh = np.angle(np.exp(1j * (np.roll(heading, -1) - np.roll(heading, 1))))
    curvature = dh / (2 * spacing)
    return pts, heading, curvature, spacing


def _check_corridor(points: np.ndarray, curvature: np.ndarray, spacing: float, half_width: float, fname: str) -> None:
    """The corridor must not fold or touch itself: the car's projection on the lap is searched
    locally, and must be the only nearby part of the lap."""
    i = int(np.argmax(np.abs(curvature)))
    if abs(curvature[i]) * half_width >= 1.0:
        raise TrackError(f"{fname}: field half_width ({half_width} m): the lap's tightest corner, radius "
                         f"{1 / abs(curvature[i]):.2f} m at ({points[i, 0]:.2f}, {points[i, 1]:.2f}) m, is tighter than "
                         "the half width, so the corridor's inner edge folds over itself")
    n = len(points)
    sub = np.arange(0, n, 2)
    d = np.hypot(*(points[sub, None, :] - points[None, sub, :]).transpose(2, 0, 1))
    gap = np.abs(sub[:, None] - sub[None, :]) * spacing
    gap = np.minimum(gap, n * spacing - gap)
    close = (gap > math.pi * half_width + 0.5) & (d < 2 * half_width + 0.1)
    if close.any():
        i, j = np.argwhere(close)[0]
        raise TrackError(f"{fname}: field half_width ({half_width} m): the corridor overlaps itself near "
                         f"({points[sub[i], 0]:.2f}, {points[sub[i], 1]:.2f}) and ({points[sub[j], 0]:.2f}, {points[sub[j], 1]:.2f}) m")


def extract_checkpoints(track: Track, spacing: float) -> np.ndarray:
    """Indices (into track.points) of checkpoints every ~`spacing` m of the demonstration lap, the
    first at its first point (the start/finish line)."""
    m = max(3, int(round(track.length / spacing)))
    return np.round(np.arange(m) * track.n / m).astype(np.int32) % track.n
