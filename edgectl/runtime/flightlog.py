"""Flight logs: one schema for every vehicle, one row per control tick, written as CSV or MCAP.

The columns (COLUMNS), the same for the quadrotor host loop (sim://, MAVLink), the Crazyflie flying its policy on
board, the rc car and the avoid task:
  t                      loop time, s (0 at the first tick)
  period_error_ms        how late the tick started against its schedule (0 when ticks run back to back)
  compute_ms             the tick's work, state read to command sent
  controller, event      who flew the tick (nominal, backup, stopped) and the reason of a switch at this tick
  x y z, qw qx qy qz,    the state the loop flew on (world z up, m; quaternion wxyz, body to world; m/s; body rad/s);
  vx vy vz, wx wy wz     empty (nan) on a tick without a usable state. The rc car maps its planar state here:
                         z = 0, the yaw as a rotation about z, its speed along its heading as vx vy (world frame),
                         its yaw rate as wz.
  ref_x ref_y ref_z      the reference: the hover point or trajectory (quadrotor), the next checkpoint (rc car),
                         nan for the avoid task (its goal is to cross the field)
  a1..a4                 the command sent, in the contract's [-1, 1] action units: motors M1..M4, or ctbr
                         (thrust, roll, pitch, yaw rate), the rc car's steer and throttle (a1, a2), the avoid
                         task's lateral and vertical velocity commands (a1, a2); unused ones nan
  robustness             a margin that is > 0 while safe: the shield's or monitor's STL robustness (quadrotor),
                         the distance inside the corridor's edge (rc car), the clearance to the nearest obstacle
                         (avoid, when the field is known); nan when there is none
  link                   link events: silent, stale N ms, back, vehicle link drops N; empty otherwise

CSV (any suffix but .mcap): each row reaches the operating system as one write when its tick logs it (line
buffering), so a host process killed mid-flight (SIGKILL, an out-of-memory kill) leaves every tick up to the last one
logged, and no torn row; bench/faults.py (sigkill) checks it. A power loss can still tear the last row: `read_log`
drops a last row without its line end (a torn write is not a row) and refuses any other malformed row, naming its
line. Logs written before the link column (26 columns) still read, with an empty link column.

MCAP (--log F.mcap; the pip package mcap): the same row as one message per tick on each of the channels in
MCAP_CHANNELS, JSON-encoded (messageEncoding "json") with a JSON schema each (encoding "jsonschema"), which Foxglove
opens; nan is written as null. The message's sequence number is the tick index and its log time the wall clock of
the tick; a metadata record "edgectl" names the vehicle. A chunk is written every 64 KiB (about a second of
ticks at 100 Hz): a process killed mid-flight loses the chunk it had open, so CSV is the crash-proof one.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import numpy as np

COLUMNS = (["t", "period_error_ms", "compute_ms", "controller", "event"]
           + ["x", "y", "z"] + ["qw", "qx", "qy", "qz"] + ["vx", "vy", "vz"] + ["wx", "wy", "wz"]
           + ["ref_x", "ref_y", "ref_z"] + [f"a{i}" for i in range(1, 5)] + ["robustness", "link"])
TEXT_COLUMNS = ("controller", "event", "link")
LEGACY_COLUMNS = COLUMNS[:-1]  # logs written before the link column

_STATE = ["x", "y", "z", "qw", "qx", "qy", "qz", "vx", "vy", "vz", "wx", "wy", "wz"]
# topic -> (schema name, description, {message key: column}); every message also carries t (loop time, s)
MCAP_CHANNELS = {
    "/state": ("edgectl.State", "The state the loop flew on: position m (world, z up), quaternion wxyz (body to "
               "world), velocity m/s (world), angular velocity rad/s (body); null without a usable state",
               {n: n for n in _STATE}),
    "/reference": ("edgectl.Reference", "The reference position, m (world): hover point, trajectory or next checkpoint",
                   {"x": "ref_x", "y": "ref_y", "z": "ref_z"}),
    "/action": ("edgectl.Action", "The command sent, contract units [-1, 1]: motors, ctbr, steer/throttle or "
                "velocity commands; unused ones null", {f"a{i}": f"a{i}" for i in range(1, 5)}),
    "/mode": ("edgectl.Mode", "Who flew the tick (nominal, backup, stopped) and the reason of a switch at this tick",
              {"controller": "controller", "event": "event"}),
    "/robustness": ("edgectl.Robustness", "Safety margin, > 0 while safe (STL robustness, corridor or obstacle "
                    "clearance, m)", {"robustness": "robustness"}),
    "/link": ("edgectl.LinkEvent", "Link events: silent, stale N ms, back, vehicle link drops N; empty otherwise",
              {"event": "link"}),
    "/timing": ("edgectl.Timing", "Tick start error against its schedule and the tick's compute time, ms",
                {"period_error_ms": "period_error_ms", "compute_ms": "compute_ms"}),
}
MCAP_MISSING = ("--log {path}: MCAP logs need the Python package mcap, which is not installed: "
                "pip install mcap (or pip install \"edgectl[fly]\")")


def car_state(x: float, y: float, yaw: float, speed: float, yaw_rate: float):
    """A planar car's state in the log's state columns (see the module docstring)."""
    from .protocol import State
    c, s = math.cos(yaw), math.sin(yaw)
    return State(0.0, np.array([x, y, 0.0]), np.array([math.cos(0.5 * yaw), 0.0, 0.0, math.sin(0.5 * yaw)]),
                 np.array([speed * c, speed * s, 0.0]), np.array([0.0, 0.0, yaw_rate]))


def _row(t, period_error_ms, compute_ms, controller, event, state, ref, action, robustness, link) -> list:
    """The values of one row, in COLUMNS order: floats (nan for none) and the text columns as str."""
    vals = [float(t), math.nan if period_error_ms is None else float(period_error_ms), float(compute_ms), str(controller),
            str(event)]
    for name, n in (("pos", 3), ("quat", 4), ("vel", 3), ("omega", 3)):
        v = None if state is None else getattr(state, name)
        vals += [math.nan] * n if v is None else [float(x) for x in np.asarray(v, float).reshape(n)]
    vals += [math.nan] * 3 if ref is None else [float(x) for x in np.asarray(ref, float).reshape(3)]
    a = [] if action is None else [float(x) for x in np.asarray(action, float).reshape(-1)[:4]]
    vals += a + [math.nan] * (4 - len(a))
    vals += [float(robustness), str(link or "")]
    return vals


class _CsvSink:
    def __init__(self, path: Path):
        self._f = open(path, "w", newline="", buffering=1)  # line buffered: a row per write, at its tick
        self._w = csv.writer(self._f)
        self._w.writerow(COLUMNS)

    def write(self, vals: list) -> None:
        out = [f"{vals[0]:.5f}", f"{vals[1]:.4f}", f"{vals[2]:.4f}"]
        out += [v if isinstance(v, str) else f"{v:.6g}" for v in vals[3:]]
        self._w.writerow(out)

    def close(self) -> None:
        self._f.close()


class _McapSink:
    CHUNK = 64 * 1024

    def __init__(self, path: Path, vehicle: str):
        from mcap.writer import Writer  # ImportError: the caller names the package (MCAP_MISSING)

        self._f = open(path, "wb")
        try:
            self._w = Writer(self._f, chunk_size=self.CHUNK)
            self._w.start(profile="", library="edgectl")
            self._channels = []
            index = {c: i for i, c in enumerate(COLUMNS)}
            for topic, (name, desc, keys) in MCAP_CHANNELS.items():
                props = {"t": {"type": "number", "description": "loop time, s"}}
                for key, col in keys.items():
                    props[key] = {"type": "string"} if col in TEXT_COLUMNS else {"type": ["number", "null"]}
                schema = {"title": name, "description": desc, "type": "object", "properties": props,
                          "required": list(props)}
                sid = self._w.register_schema(name=name, encoding="jsonschema", data=json.dumps(schema).encode())
                cid = self._w.register_channel(topic=topic, message_encoding="json", schema_id=sid)
                self._channels.append((cid, [(k, index[c]) for k, c in keys.items()]))
            self._w.add_metadata("edgectl", {"vehicle": vehicle, "columns": ",".join(COLUMNS)})
        except BaseException:
            self._f.close()
            raise
        self._seq = 0
        self._t0_ns = None

    def write(self, vals: list) -> None:
        now = time.time_ns()
        if self._t0_ns is None:
            self._t0_ns = now - int(vals[0] * 1e9)
        log_ns = max(now, self._t0_ns + int(vals[0] * 1e9))  # a back-to-back run: loop time, not the wall clock
        # JSON by hand (floats as repr, nan as null, text through json.dumps): a third of json.dumps' cost per tick
        enc = [json.dumps(v) if isinstance(v, str) else (repr(v) if math.isfinite(v) else "null") for v in vals]
        for cid, keys in self._channels:
            data = "{\"t\":" + enc[0] + "".join(f',"{k}":{enc[i]}' for k, i in keys) + "}"
            self._w.add_message(channel_id=cid, log_time=log_ns, publish_time=log_ns, sequence=self._seq,
                                data=data.encode())
        self._seq += 1

    def close(self) -> None:
        try:
            self._w.finish()
        finally:
            self._f.close()


def is_mcap(path) -> bool:
    return Path(path).suffix.lower() == ".mcap"


def check_writer(path) -> None:
    """Raise ImportError (naming the package, `name` "mcap") if a log at `path` needs a package that is missing:
    called before anything is armed or written."""
    if path is not None and is_mcap(path):
        try:
            import mcap.writer  # noqa: F401
        except ImportError as e:
            raise ImportError(MCAP_MISSING.format(path=path), name="mcap") from e


class FlightLog:
    """A flight log at `path`: MCAP for a .mcap suffix, CSV for any other. `vehicle` goes into the MCAP metadata.

    Raises ImportError (ValueError text: MCAP_MISSING) before creating anything when MCAP is asked for and the mcap
    package is missing, OSError when the file cannot be written."""

    def __init__(self, path: Path, vehicle: str = "quadrotor"):
        self.path = Path(path)
        check_writer(self.path)  # before the file is made
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._sink = _McapSink(self.path, vehicle) if is_mcap(self.path) else _CsvSink(self.path)
        self.rows = 0

    def write(self, t, period_error_ms, compute_ms, controller, event, state, ref, action, robustness,
              link: str = "") -> None:
        self._sink.write(_row(t, period_error_ms, compute_ms, controller, event, state, ref, action, robustness, link))
        self.rows += 1

    def close(self) -> None:
        if self._sink is not None:
            sink, self._sink = self._sink, None
            sink.close()


def read_log(path: Path) -> dict[str, np.ndarray]:
    """A flight log (CSV, MCAP, or a PX4 ULog .ulg: edgectl.runtime.ulog) as {column: array}; ValueError naming the
    file for anything that is not one."""
    path = Path(path)
    if is_mcap(path):
        return _read_mcap(path)
    if path.suffix.lower() == ".ulg":  # a PX4 flight, to compare with a simulated one
        from .ulog import read_ulog
        cols = read_ulog(path)
        n = len(cols["t"])
        return {c: cols[c] if c in cols else np.full(n, "", dtype=object) if c in TEXT_COLUMNS else np.full(n, np.nan)
                for c in COLUMNS}
    try:
        with open(path, newline="") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not an edgectl flight log (not text; an MCAP log ends in .mcap)") from None
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0] if rows else None
    if header not in (COLUMNS, LEGACY_COLUMNS):
        raise ValueError(f"{path}: not an edgectl flight log (header differs from {COLUMNS[:5]}...)")
    if len(rows) > 1 and not text.endswith("\n"):  # the last write was cut short (power loss): not a row
        rows.pop()
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{path}: line {i}: {len(row)} fields, expected {len(header)}")
    cols = list(zip(*rows[1:])) if len(rows) > 1 else [()] * len(header)
    out = {}
    for name, values in zip(header, cols):
        out[name] = np.asarray(values, dtype=object if name in TEXT_COLUMNS else np.float64)
    if "link" not in out:
        out["link"] = np.full(len(rows) - 1, "", dtype=object)
    return out


def _read_mcap(path: Path) -> dict[str, np.ndarray]:
    """A log a process finished reads through its summary; one cut short (a killed process: no footer, the open chunk
    lost) reads record by record up to its last whole chunk, as a torn CSV row is dropped."""
    try:
        from mcap.reader import make_reader
        from mcap.records import Channel, Message
        from mcap.stream_reader import StreamReader
    except ImportError as e:
        raise ImportError(MCAP_MISSING.format(path=path).replace("--log", "reading"), name="mcap") from e
    by_tick: dict[int, dict] = {}

    def take(topic: str, message) -> None:
        msg = json.loads(message.data)
        row = by_tick.setdefault(message.sequence, {"t": msg.get("t")})
        for key, col in MCAP_CHANNELS[topic][2].items():
            row[col] = msg.get(key)

    try:
        with open(path, "rb") as f:
            for _schema, channel, message in make_reader(f).iter_messages():
                if channel.topic in MCAP_CHANNELS and channel.message_encoding == "json":
                    take(channel.topic, message)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001  the mcap reader raises its own errors, struct.error, EndOfFile, ...
        by_tick.clear()
        topics: dict[int, str] = {}
        try:
            with open(path, "rb") as f:
                for rec in StreamReader(f, skip_magic=False).records:
                    if isinstance(rec, Channel) and rec.message_encoding == "json":
                        topics[rec.id] = rec.topic
                    elif isinstance(rec, Message) and topics.get(rec.channel_id) in MCAP_CHANNELS:
                        take(topics[rec.channel_id], rec)
        except OSError:
            raise
        except Exception:  # noqa: BLE001  the cut: keep every tick read before it
            pass
        if not by_tick:
            # the reader's error type only: its text (offsets, lengths of garbage) says nothing to a user
            raise ValueError(f"{path}: not a readable MCAP flight log (the mcap reader: {type(e).__name__})") from None
    if not by_tick:
        raise ValueError(f"{path}: not an edgectl flight log (no {', '.join(MCAP_CHANNELS)} messages)")
    # a tick whose messages the cut split is not a row
    ticks = [r for _, r in sorted(by_tick.items()) if len(r) == len(COLUMNS)]
    out = {}
    for name in COLUMNS:
        if name in TEXT_COLUMNS:
            out[name] = np.asarray([r.get(name) or "" for r in ticks], dtype=object)
        else:
            out[name] = np.asarray([np.nan if r.get(name) is None else r[name] for r in ticks], dtype=np.float64)
    return out
