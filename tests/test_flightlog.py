"""The one flight-log schema (edgectl/runtime/flightlog.py): written by `edgectl run` for every vehicle as CSV or,
with --log F.mcap, as MCAP that the mcap reader (and so Foxglove) reads with every channel; `edgectl plot` reads both.

The on-board Crazyflie, MAVLink and avoid-on-a-Crazyflie runs write their logs in tests/test_link_faults.py,
tests/test_runtime.py and tests/test_vision_link.py, which plot them too (`plot_both` here)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgectl.cli import app
from edgectl.runtime.flightlog import COLUMNS, MCAP_CHANNELS, TEXT_COLUMNS, FlightLog, car_state, read_log
from edgectl.runtime.protocol import State

DATA = Path(__file__).resolve().parent / "data"
PNG = b"\x89PNG\r\n\x1a\n"


def _run(*args) -> dict:
    r = CliRunner().invoke(app, ["run", *map(str, args), "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1])


def _rewrite(data: dict, path: Path, vehicle: str = "test") -> None:
    """A log read back, written again through FlightLog (the other format)."""
    log = FlightLog(path, vehicle=vehicle)
    for i in range(len(data["t"])):
        g = {c: data[c][i] for c in COLUMNS}
        state = State(0.0, [g["x"], g["y"], g["z"]], [g["qw"], g["qx"], g["qy"], g["qz"]], [g["vx"], g["vy"], g["vz"]],
                      [g["wx"], g["wy"], g["wz"]])
        log.write(g["t"], g["period_error_ms"], g["compute_ms"], g["controller"], g["event"], state,
                  [g["ref_x"], g["ref_y"], g["ref_z"]], [g["a1"], g["a2"], g["a3"], g["a4"]], g["robustness"], g["link"])
    log.close()


def _same(a: dict, b: dict, skip=()) -> None:
    assert len(a["t"]) == len(b["t"])
    for c in (c for c in COLUMNS if c not in skip):
        if c in TEXT_COLUMNS:
            assert list(a[c]) == list(b[c]), c
        else:  # CSV keeps 6 significant digits (t 5 decimals, timings 4)
            np.testing.assert_allclose(a[c], b[c], rtol=1e-5, atol=1e-4, equal_nan=True, err_msg=c)


def plot_both(log: Path, tmp_path: Path) -> None:
    """`edgectl plot` renders `log` and the same rows in the other format (CSV <-> MCAP)."""
    other = tmp_path / (log.stem + ("-again.csv" if log.suffix == ".mcap" else "-again.mcap"))
    _rewrite(read_log(log), other)
    _same(read_log(log), read_log(other))
    for p in (log, other):
        r = CliRunner().invoke(app, ["plot", str(p), "--out", str(p.with_suffix(p.suffix + ".png"))])
        assert r.exit_code == 0, r.output
        assert p.with_suffix(p.suffix + ".png").read_bytes()[:8] == PNG


def test_an_mcap_log_from_edgectl_run_reads_back_through_the_mcap_reader_with_every_channel(tmp_path):
    csv_s = _run(DATA / "hover_bundle", "--uri", "sim://", "--seconds", "2", "--log", tmp_path / "f.csv")
    mcap_s = _run(DATA / "hover_bundle", "--uri", "sim://", "--seconds", "2", "--log", tmp_path / "f.mcap")
    ticks = len(read_log(tmp_path / "f.csv")["t"])
    assert ticks == csv_s["ticks"] == mcap_s["ticks"] == 200
    from mcap.reader import make_reader

    counts, schemas = {}, {}
    with open(tmp_path / "f.mcap", "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        for ch in summary.channels.values():  # what Foxglove needs to open them: JSON messages, JSON schemas
            sc = summary.schemas[ch.schema_id]
            assert ch.message_encoding == "json" and sc.encoding == "jsonschema", ch.topic
            schemas[ch.topic] = json.loads(sc.data)
        assert [m.name for m in reader.iter_metadata()] == ["edgectl"]
        for _schema, ch, msg in reader.iter_messages():
            body = json.loads(msg.data)
            assert set(body) == set(schemas[ch.topic]["properties"]), ch.topic  # every message fills its schema
            counts[ch.topic] = counts.get(ch.topic, 0) + 1
    assert set(schemas) == set(MCAP_CHANNELS) >= {"/state", "/reference", "/action", "/mode", "/robustness", "/link"}
    assert counts == {topic: ticks for topic in MCAP_CHANNELS}
    d = read_log(tmp_path / "f.mcap")
    assert len(d["t"]) == ticks and np.all(d["controller"] == "nominal") and np.all(d["ref_z"] == 0.0)
    assert np.all(np.isfinite(d["x"])) and np.all(np.abs(d["a1"]) <= 1.0) and np.all(np.isnan(d["a1"]) == False)  # noqa: E712
    plot_both(tmp_path / "f.mcap", tmp_path)
    plot_both(tmp_path / "f.csv", tmp_path)


def test_csv_and_mcap_hold_the_same_rows_and_nan_is_null(tmp_path):
    rows = []
    for k in range(5):
        state = None if k == 2 else State(0.0, [k, -k, 0.5], [1, 0, 0, 0], [0.1, 0, 0], [0, 0, k])
        link = {2: "silent", 3: "back"}.get(k, "")
        rows.append((0.01 * k, 0.1 * k, 1.5, "backup" if k >= 2 else "nominal", "watchdog: link silent" if k == 2 else "",
                     state, (0, 0, 1), [0.1 * k, -0.2, math.nan, 1.0], math.nan if k == 2 else 0.3, link))
    for name in ("f.csv", "f.mcap"):
        log = FlightLog(tmp_path / name, vehicle="quadrotor")
        for r in rows:
            log.write(*r)
        log.close()
    a, b = read_log(tmp_path / "f.csv"), read_log(tmp_path / "f.mcap")
    _same(a, b)
    assert list(b["link"]) == ["", "", "silent", "back", ""] and np.isnan(b["x"][2]) and b["x"][3] == 3.0
    from mcap.reader import make_reader

    with open(tmp_path / "f.mcap", "rb") as f:
        state_msgs = [json.loads(m.data) for _, ch, m in make_reader(f).iter_messages(topics=["/state"])]
    assert state_msgs[2]["x"] is None and state_msgs[3]["x"] == 3.0  # strict JSON: nan is null


def test_a_car_state_maps_into_the_named_columns():
    s = car_state(1.0, 2.0, math.pi / 2, 3.0, 0.5)
    assert np.allclose(s.pos, [1, 2, 0]) and np.allclose(s.vel, [0, 3, 0], atol=1e-12) and np.allclose(s.omega, [0, 0, 0.5])
    assert np.allclose(s.quat, [math.cos(math.pi / 4), 0, 0, math.sin(math.pi / 4)])


@pytest.mark.parametrize("bundle,args,vehicle", [
    ("race_bundle", ("--seconds", "4"), "rc car"),
    ("avoid_bundle", ("--seconds", "3"), "avoid"),
])
def test_every_vehicle_logs_the_one_schema_and_plots_from_csv_and_mcap(tmp_path, bundle, args, vehicle):
    for suffix in (".csv", ".mcap"):
        log = tmp_path / f"{bundle}{suffix}"
        s = _run(DATA / bundle, "--uri", "sim://", *args, "--as-fast-as-possible", "--log", log)
        d = read_log(log)
        assert s["vehicle"] == vehicle and len(d["t"]) == s["ticks"] > 0
        assert np.all(np.isfinite(d["x"])) and np.isfinite(d["a1"]).all() and np.isnan(d["a3"]).all()
        assert np.nanmin(d["robustness"]) > 0  # inside the corridor / clear of the obstacles
        if vehicle == "rc car":
            assert np.all(d["z"] == 0) and np.isfinite(d["ref_x"]).all()  # the next checkpoint
        r = CliRunner().invoke(app, ["plot", str(log)])
        assert r.exit_code == 0, r.output
        assert log.with_suffix(".png").read_bytes()[:8] == PNG
    # the same flight twice (as fast as possible: deterministic), but for its timings
    _same(read_log(tmp_path / f"{bundle}.csv"), read_log(tmp_path / f"{bundle}.mcap"), skip=("period_error_ms", "compute_ms"))


def test_a_log_suffix_other_than_mcap_is_csv(tmp_path):
    log = tmp_path / "flight.log"
    _run(DATA / "hover_bundle", "--uri", "sim://", "--seconds", "0.2", "--as-fast-as-possible", "--log", log)
    assert log.read_text().splitlines()[0] == ",".join(COLUMNS) and len(read_log(log)["t"]) == 20


def test_a_log_from_before_the_link_column_still_reads(tmp_path):
    old = tmp_path / "old.csv"
    old.write_text(",".join(COLUMNS[:-1]) + "\n" + ",".join(["0.01", "0", "0", "nominal", ""] + ["0"] * 21) + "\n")
    d = read_log(old)
    assert len(d["t"]) == 1 and list(d["link"]) == [""]


@pytest.mark.parametrize("content,says", [
    (b"\x89MCAP0\r\n" + bytes(range(256)) * 4, "not a readable MCAP flight log"),  # the magic, then garbage
    (b"", "not a readable MCAP flight log"),
])
def test_a_corrupt_mcap_log_is_one_error_line_exit_2(tmp_path, content, says):
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(content)
    r = CliRunner().invoke(app, ["plot", str(bad)])
    assert r.exit_code == 2 and says in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not bad.with_suffix(".png").exists()


def test_an_mcap_log_cut_short_reads_up_to_its_last_whole_chunk(tmp_path):
    """A process killed mid-flight leaves no summary and loses the chunk it had open: the ticks before it read."""
    log = tmp_path / "f.mcap"
    _run(DATA / "hover_bundle", "--uri", "sim://", "--seconds", "2", "--as-fast-as-possible", "--log", log)
    full = read_log(log)
    raw = log.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(raw[: len(raw) // 2])
    d = read_log(cut)
    n = len(d["t"])
    assert 0 < n < len(full["t"])
    _same(d, {c: full[c][:n] for c in COLUMNS})
    r = CliRunner().invoke(app, ["plot", str(cut)])
    assert r.exit_code == 0, r.output


def test_link_events_and_the_stopping_tick_are_rows(tmp_path):
    """The host loop's link going silent: the link column says when (once), the switches are in the event column,
    and the safe-stop tick is a row too, so rows = ticks."""
    from edgectl.bundle import load_bundle
    from edgectl.platforms import parse_platform
    from edgectl.runtime.links import SimLink
    from edgectl.runtime.loop import ControlLoop, LoopConfig
    from edgectl.safety.backup import BackupController

    b = load_bundle(DATA / "hover_bundle")
    plat = parse_platform((b.path / "platform.toml").read_bytes(), b.path / "platform.toml")
    log = FlightLog(tmp_path / "cut.mcap")
    cfg = LoopConfig(rate_hz=100.0, seconds=3.0, realtime=False, stop_after_s=0.5)
    rep = ControlLoop(SimLink(plat, drop_after=50), b.act, b.contract, BackupController(plat), cfg, log=log).run()
    log.close()
    d = read_log(tmp_path / "cut.mcap")
    assert len(d["t"]) == rep.ticks and rep.final_mode == d["controller"][-1] == "stopped"
    events = [(i, e) for i, e in enumerate(d["link"]) if e]
    assert len(events) == 1 and events[0][1] == "silent" and d["t"][events[0][0]] == pytest.approx(0.5, abs=0.011)
    i = events[0][0]
    assert "link silent" in d["event"][i] and "safe stop" in d["event"][-1] and np.isnan(d["x"][i:]).all()
    s = rep.summary()
    assert s["vehicle"] == "quadrotor" and [w["to"] for w in s["switches"]] == ["backup", "stopped"]


# --- PX4 ULog (edgectl/runtime/ulog.py) ----------------------------------------------------------------------------
def _ulog(path: Path, topics: dict) -> None:
    """A minimal ULog file (PX4's format: docs.px4.io, ULog File Format): header, flag bits, one format and one
    subscription per topic, then data messages in time order. topics: name -> (fields "type name", rows)."""
    import struct

    def msg(kind: bytes, body: bytes) -> bytes:
        return struct.pack("<HB", len(body), kind[0]) + body

    out = bytearray(b"ULog\x01\x12\x35\x01" + struct.pack("<Q", 0))
    out += msg(b"B", bytes(16) + struct.pack("<3Q", 0, 0, 0))
    for name, (fields, _) in topics.items():
        out += msg(b"F", f"{name}:{''.join(f + ';' for f in ['uint64_t timestamp', *fields])}".encode())
    data = []
    for k, (name, (fields, rows)) in enumerate(topics.items()):
        out += msg(b"A", struct.pack("<BH", 0, k) + name.encode())
        fmt = "<Q" + "".join({"float": "f", "uint8_t": "B"}[f.split()[0].split("[")[0]] * (
            int(f.split("[")[1].split("]")[0]) if "[" in f else 1) for f in fields)
        for ts, *vals in rows:
            data.append((ts, msg(b"D", struct.pack("<H", k) + struct.pack(fmt, ts, *vals))))
    for _, m in sorted(data, key=lambda x: x[0]):
        out += m
    path.write_bytes(bytes(out))


def test_a_px4_ulog_plots_in_edgectl_frames(tmp_path):
    pytest.importorskip("pyulog")
    from edgectl.runtime.ulog import quat_ned_frd_to_enu_flu

    yaw = 0.3  # heading 0.3 rad east of north, level
    q_ned = [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]
    us = [1_000_000 + 10_000 * k for k in range(50)]
    _ulog(tmp_path / "px4.ulg", {
        "vehicle_local_position": (["float x", "float y", "float z", "float vx", "float vy", "float vz"],
                                   [(t, 1.0, 2.0, -0.5 - 0.01 * k, 0.1, 0.0, -0.2) for k, t in enumerate(us)]),
        "vehicle_attitude": (["float[4] q"], [(t - 2000, *q_ned) for t in us]),
        "vehicle_angular_velocity": (["float[3] xyz"], [(t - 1000, 0.1, 0.2, 0.3) for t in us]),
        "trajectory_setpoint": (["float[3] position"], [(us[0] - 5000, 1.0, 2.0, -1.0)]),
        "actuator_motors": (["float[12] control"], [(t - 500, *([0.25] * 4 + [math.nan] * 8)) for t in us]),
        "vehicle_status": (["uint8_t nav_state"], [(us[0] - 100, 2), (us[25], 14)]),
    })
    d = read_log(tmp_path / "px4.ulg")
    assert len(d["t"]) == 50 and d["t"][1] == pytest.approx(0.01)
    assert np.allclose(d["x"], 2.0) and np.allclose(d["y"], 1.0) and d["z"][0] == pytest.approx(0.5)  # NED -> ENU
    assert np.allclose([d["vx"][0], d["vy"][0], d["vz"][0]], [0.0, 0.1, 0.2])
    assert np.allclose([d["ref_x"][0], d["ref_y"][0], d["ref_z"][0]], [2.0, 1.0, 1.0])
    assert np.allclose([d["wx"][0], d["wy"][0], d["wz"][0]], [0.1, -0.2, -0.3], atol=1e-6)  # FRD -> FLU
    assert np.allclose(d["a1"], -0.5) and np.allclose(d["a4"], -0.5)  # thrust 0.25 -> contract units
    q_enu = [d[c][0] for c in ("qw", "qx", "qy", "qz")]  # heading 0.3 from north = pi/2 - 0.3 from east
    assert np.allclose(q_enu, [math.cos((math.pi / 2 - yaw) / 2), 0, 0, math.sin((math.pi / 2 - yaw) / 2)], atol=1e-6)
    assert list(d["controller"][:25]) == ["px4 POSCTL"] * 25 and list(d["controller"][25:]) == ["nominal"] * 25
    assert d["event"][25] == "px4 POSCTL -> nominal"
    try:  # the one conversion the MAVLink link flies with (its package imports pymavlink)
        from firmware_bridge.mavlink.frames import quat_ned_frd_to_enu_flu as link_conversion
    except ImportError:
        link_conversion = None
    if link_conversion is not None:
        rng = np.random.default_rng(0)
        qs = rng.standard_normal((20, 4))
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        assert np.allclose(quat_ned_frd_to_enu_flu(qs), link_conversion(qs))
    r = CliRunner().invoke(app, ["plot", str(tmp_path / "px4.ulg")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "px4.png").read_bytes()[:8] == PNG
    (tmp_path / "bad.ulg").write_bytes(b"ULog\x01\x12\x35\x01" + bytes(100))
    r = CliRunner().invoke(app, ["plot", str(tmp_path / "bad.ulg")])
    assert r.exit_code == 2 and "bad.ulg" in r.output and len(r.output.strip().splitlines()) == 1, r.output
