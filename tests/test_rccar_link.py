"""RC car link: protocol, C core == Python twin, bit flips, watchdog, bridge <-> sim car on a pty, VESC."""
from __future__ import annotations

import shutil
import struct
import subprocess
import time
from dataclasses import astuple

import numpy as np
import pytest

serial = pytest.importorskip("serial")
pytest.importorskip("cobs")

from firmware_bridge.rccar import protocol as P  # noqa: E402
from firmware_bridge.rccar import vesc as V  # noqa: E402
from firmware_bridge.rccar.bridge import RcCarLink, RcCarLinkError, VescLink  # noqa: E402
from firmware_bridge.sim.rccar.car_core import CarCore, Sensors  # noqa: E402
from firmware_bridge.rccar.protocol import ErrorCode, Flag, FrameError, MsgType  # noqa: E402

KIND_OF_CODE = {int(c): c.name.lower() for c in ErrorCode if 1 <= c <= 7}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clib(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found: the C core cannot be built")
    from firmware_bridge.sim.rccar import ccore

    return ccore.load(ccore.build(tmp_path_factory.mktemp("ccore")))  # a fresh -Werror build


def raw_frame(body: bytes, mtype: int, seq: int = 7, version: int = P.VERSION, crc_ok: bool = True) -> bytes:
    """A frame built by hand, bypassing the encoder's checks."""
    payload = bytes([version, mtype]) + struct.pack("<H", seq) + body
    crc = P.crc16(payload) ^ (0 if crc_ok else 1)
    return P.cobs.encode(payload + struct.pack("<H", crc)) + b"\x00"


def all_messages():
    return [
        P.Heartbeat(0xFFFFFFFF, int(Flag.ARMED | Flag.ECHO), 65535),
        P.Heartbeat(0, 0, 0),
        P.Command(-1000, 1000, 20),
        P.Command(1000, -1000, 5000),
        P.Command(0, 0, 200),
        P.Telemetry(123456, -32768, -2**31, -1000, 1000, 65535, 32767, -1, 0, int(Flag.FAILSAFE | Flag.BRAKE), 65535, 0),
        P.Telemetry(0, 32767, 2**31 - 1, 0, 0, 0, -32768, 32767, -32768, 0, 0, 65535),
        P.Arm(), P.Disarm(), P.Error(ErrorCode.WATCHDOG, 0xFFFF), P.Error(ErrorCode.CRC, 3),
    ]


def random_host_msg(rng):
    k = int(rng.integers(4))
    if k == 0:
        return P.Command(int(rng.integers(-1000, 1001)), int(rng.integers(-1000, 1001)), int(rng.integers(20, 5001)))
    if k == 1:
        return P.Heartbeat(int(rng.integers(2**32)), 0, int(rng.integers(65536)))
    if k == 2:
        return P.Error(int(rng.integers(1, 10)), int(rng.integers(65536)))
    return P.Arm()


def make_cores(clib):
    from firmware_bridge.sim.rccar.ccore import CCore

    py_out, c_out = [], []
    return CarCore(py_out.append), CCore(c_out.append, clib), py_out, c_out


def same(py, c, py_out, c_out):
    assert py.outputs() == c.outputs()
    assert py.flags == c.flags
    assert py.counters() == c.counters()
    assert py_out == c_out


# --------------------------------------------------------------------------------------------
# protocol
# --------------------------------------------------------------------------------------------
def test_round_trip_every_message_and_byte_wise_feeding():
    dec = P.FrameDecoder()
    stream = b""
    for i, m in enumerate(all_messages()):
        frame = P.encode(m, i * 4099 % 65536)
        assert frame.endswith(b"\x00") and b"\x00" not in frame[:-1]
        assert len(frame) <= P.MAX_ENCODED + 1
        pkt = P.decode_frame(frame[:-1])
        assert pkt.msg == m and pkt.seq == i * 4099 % 65536
        stream += frame
    items = [x for b in stream for x in dec.feed(bytes([b]))]  # one byte at a time
    assert [x.msg for x in items] == all_messages()
    assert dec.ok == len(all_messages()) and dec.bad == 0
    assert P.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value


@pytest.mark.parametrize("frame, kind, words", [
    (raw_frame(struct.pack("<hhH", 0, 0, 200), MsgType.COMMAND, crc_ok=False), "crc", ["CRC"]),
    (bytes([0x05, 1, 2, 0]), "cobs", ["COBS"]),  # block says 4 more bytes, frame ends after 2
    (bytes([0x03, 1, 1, 0]), "length", ["shorter", "header"]),
    (raw_frame(struct.pack("<hhH", 0, 0, 200) + b"\x01", MsgType.COMMAND), "length", ["COMMAND", "7", "6"]),
    (raw_frame(b"", 42), "type", ["unknown message type 42"]),
    (raw_frame(b"", MsgType.ARM, version=2), "version", ["version 2"]),
    (raw_frame(struct.pack("<hhH", 1001, 0, 200), MsgType.COMMAND), "value", ["COMMAND.steer=1001"]),
    (raw_frame(struct.pack("<hhH", 0, -1200, 200), MsgType.COMMAND), "value", ["COMMAND.throttle=-1200"]),
    (raw_frame(struct.pack("<hhH", 0, 0, 5), MsgType.COMMAND), "value", ["COMMAND.timeout_ms=5"]),
    (raw_frame(struct.pack("<IHH", 0, 0x8000, 0), MsgType.HEARTBEAT), "value", ["HEARTBEAT.flags", "reserved"]),
    (raw_frame(struct.pack("<BH", 0, 1), MsgType.ERROR), "value", ["ERROR.code=0"]),
    (b"\x01" * 60 + b"\x00", "overflow", ["without a delimiter"]),
])
def test_malformed_frames_are_named_counted_and_resynced(frame, kind, words):
    dec = P.FrameDecoder()
    good = P.encode(P.Arm(), 9)
    items = dec.feed(frame + good)
    assert isinstance(items[0], FrameError) and items[0].kind == kind, items
    for w in words:
        assert w in str(items[0]), str(items[0])
    assert items[1].msg == P.Arm() and len(items) == 2  # back in sync on the next frame
    assert dec.errors == {kind: 1} and dec.ok == 1


def test_encoder_refuses_what_the_decoder_would():
    for bad, field in [(P.Command(1001, 0), "steer"), (P.Command(0, 0, 10), "timeout_ms"),
                       (P.Heartbeat(0, 0x40), "flags"), (P.Telemetry(0, 0, 0, 0, 2000, 0, 0, 0, 0, 0, 0, 0), "throttle")]:
        with pytest.raises(FrameError, match=field):
            P.encode(bad, 0)
    with pytest.raises(FrameError, match="battery_mv"):
        P.encode(P.Telemetry(0, 0, 0, 0, 0, 70000, 0, 0, 0, 0, 0, 0), 0)  # struct range, named
    with pytest.raises(ValueError, match="steer=nan"):
        P.to_permille(float("nan"), "steer")
    assert P.to_permille(-1.0) == -1000 and P.to_permille(0.1234) == 123


def test_seq_tracker_counts_gaps_dups_late_and_restarts():
    t = P.SeqTracker()
    verdicts = [t.update(s) for s in (65534, 65535, 0, 3, 3, 2, 4, 40000, 40001)]
    assert verdicts == ["first", "ok", "ok", "gap", "dup", "late", "ok", "resync", "ok"]
    assert (t.gaps, t.dups, t.late, t.resyncs) == (2, 1, 1, 1)


# --------------------------------------------------------------------------------------------
# bit flips: every corrupted frame rejected (Python decoder, Python twin, C core), resync after
# --------------------------------------------------------------------------------------------
def test_bit_flips_2000_frames_python_and_c_agree(clib):
    rng = np.random.default_rng(2024)
    dec = P.FrameDecoder()
    py, c, py_out, c_out = make_cores(clib)
    kinds = {}
    for i in range(2000):
        msg = random_host_msg(rng)
        good = P.encode(msg, (2 * i + 1) & 0xFFFF)
        bad = bytearray(good)
        bad[int(rng.integers(len(good) - 1))] ^= 1 << int(rng.integers(8))  # anywhere but the delimiter
        bad = bytes(bad)
        items = dec.feed(bad)
        assert items and all(isinstance(x, FrameError) for x in items), (i, bad.hex(), items)
        v_py, v_c = py.feed(bad, i), c.feed(bad, i)
        assert v_py == v_c and all(v in range(-7, 0) for v in v_c), (i, bad.hex(), v_c)
        assert [KIND_OF_CODE[-v] for v in v_c] == [x.kind for x in items]  # same verdicts, all three
        for x in items:
            kinds[x.kind] = kinds.get(x.kind, 0) + 1
        ok_before = c.counters()["rx_ok"]
        (pkt,) = dec.feed(good)  # the next frame after the corrupted one is back in sync
        assert pkt.msg == msg
        assert py.feed(good, i) == c.feed(good, i) and c.counters()["rx_ok"] == ok_before + 1
    same(py, c, py_out, c_out)
    assert dec.ok == 2000 and dec.bad == sum(kinds.values()) >= 2000
    assert kinds.get("crc", 0) > 1000  # most flips are caught by the CRC, the rest by COBS/length
    print(f"bit flips: 2000/2000 corrupted frames rejected, 2000/2000 following frames decoded; verdicts {kinds}")


def test_flipped_delimiter_costs_two_frames_never_more(clib):
    rng = np.random.default_rng(5)
    dec = P.FrameDecoder()
    for i in range(300):
        a, b, c = (P.encode(random_host_msg(rng), s) for s in (3 * i, 3 * i + 1, 3 * i + 2))
        a = a[:-1] + bytes([int(rng.integers(1, 256))])  # delimiter corrupted: a and b merge
        items = dec.feed(a + b + c)
        assert all(isinstance(x, FrameError) for x in items[:-1]) and items[-1].seq == 3 * i + 2, items


def test_random_garbage_same_verdicts_and_no_crash(clib):
    rng = np.random.default_rng(11)
    py, c, py_out, c_out = make_cores(clib)
    for i in range(300):
        n = int(rng.integers(1, 80))
        junk = rng.integers(0, 256, n, dtype=np.uint8)
        junk[rng.random(n) < 0.05] = 0
        junk = junk.tobytes() + b"\x00"
        assert py.feed(junk, i) == c.feed(junk, i)
    same(py, c, py_out, c_out)
    assert py.counters()["rx_ok"] == 0


# --------------------------------------------------------------------------------------------
# C core == Python codec and twin
# --------------------------------------------------------------------------------------------
def test_c_encoder_frames_equal_python_and_decode(clib):
    from firmware_bridge.sim.rccar.ccore import c_frame

    assert clib.cl_crc16(b"123456789", 9) == 0x29B1
    for seq, m in enumerate(all_messages()):
        body = m.FMT.pack(*astuple(m))
        frame = c_frame(clib, int(m.TYPE), seq * 7919 % 65536, body)
        assert frame == P.encode(m, seq * 7919 % 65536)
        assert P.decode_frame(frame[:-1]).msg == m


def test_c_core_and_python_twin_run_the_same_session(clib):
    py, c, py_out, c_out = make_cores(clib)
    seq = iter(range(100, 10000))
    steps = [
        (0, [P.Heartbeat(1, 0, 0)]), (5, [P.Command(100, 200)]),  # disarmed: NOT_ARMED
        (10, [P.Arm()]), (12, [P.Command(100, 300, 100)]), (50, [P.Command(-400, 500, 100)]),
        (60, "late"), (61, "dup"), (70, "gap"),
        (80, [P.Disarm()]), (90, [P.Arm()]), (95, [P.Command(0, 1000, 50)]),
        (300, []),  # watchdog
        (310, [P.Error(ErrorCode.CRC, 5)]),
        (320, "telemetry_to_car"), (330, "bad_value"), (340, "bad_version"),
    ]
    last_cmd = None
    for now, what in steps:
        if what == "late":
            data = P.encode(P.Command(900, 900), last_cmd - 1)
        elif what == "dup":
            data = P.encode(P.Command(900, 900), last_cmd)
        elif what == "gap":
            for _ in range(5):
                next(seq)
            data = P.encode(P.Command(0, 100), next(seq))
        elif what == "telemetry_to_car":
            data = P.encode(P.Telemetry(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), next(seq))
        elif what == "bad_value":
            data = raw_frame(struct.pack("<hhH", 0, 0, 9999), MsgType.COMMAND, next(seq))
        elif what == "bad_version":
            data = raw_frame(b"", MsgType.ARM, next(seq), version=9)
        else:
            data = b""
            for m in what:
                s = next(seq)
                last_cmd = s if isinstance(m, P.Command) else last_cmd
                data += P.encode(m, s)
        assert py.feed(data, now) == c.feed(data, now), (now, what)
        py.tick(now)
        c.tick(now)
        py.send_telemetry(now, Sensors(1234, -5678, 7400, -10, 20, -30, int(Flag.SIMULATED)))
        c.send_telemetry(now, Sensors(1234, -5678, 7400, -10, 20, -30, int(Flag.SIMULATED)))
        same(py, c, py_out, c_out)
    cnt = c.counters()
    assert (cnt["not_armed"], cnt["late"], cnt["gaps"], cnt["failsafe"]) == (1, 2, 5, 1)
    assert (cnt["type"], cnt["value"], cnt["version"]) == (1, 1, 1)
    replies = [P.decode_frame(f[:-1]).msg for f in c_out]
    errors = [ErrorCode(m.code).name for m in replies if isinstance(m, P.Error)]
    assert errors == ["NOT_ARMED", "WATCHDOG", "TYPE", "VALUE", "VERSION"]
    assert any(isinstance(m, P.Heartbeat) and m.flags & Flag.ECHO and m.echo_seq == 100 for m in replies)


@pytest.mark.parametrize("core", ["python", "c"])
def test_watchdog_failsafe_in_the_core(core, request):
    out = []
    if core == "python":
        car = CarCore(out.append)
    else:
        from firmware_bridge.sim.rccar.ccore import CCore

        car = CCore(out.append, request.getfixturevalue("clib"))
    assert car.outputs() == (0, 0, True) and not car.flags & Flag.ARMED  # boot: neutral + brake
    t0 = 0xFFFFFF00  # 30 ms before millis() wraps
    car.feed(P.encode(P.Arm(), 1) + P.encode(P.Command(300, 600, 100), 2), t0)
    assert car.outputs() == (300, 600, False) and car.flags & Flag.ARMED and not car.flags & Flag.FAILSAFE
    car.tick((t0 + 100) & 0xFFFFFFFF)
    assert car.outputs() == (300, 600, False)  # exactly at the timeout: still driving
    car.tick((t0 + 101) & 0xFFFFFFFF)          # across the wrap
    assert car.outputs() == (0, 0, True) and car.flags & Flag.FAILSAFE
    assert P.decode_frame(out[-1][:-1]).msg == P.Error(ErrorCode.WATCHDOG, 2)
    car.tick((t0 + 500) & 0xFFFFFFFF)
    assert car.counters()["failsafe"] == 1  # one trip, one ERROR
    car.feed(P.encode(P.Command(0, 100, 100), 3), 50)
    assert car.outputs() == (0, 100, False) and not car.flags & Flag.FAILSAFE


# --------------------------------------------------------------------------------------------
# firmware builds
# --------------------------------------------------------------------------------------------
ARDUINO_STUB = """
#include <stdint.h>
#include <stddef.h>
#define A0 14
#define OUTPUT 1
#define INPUT_PULLUP 2
#define RISING 3
#define HIGH 1
#define LOW 0
struct SerialT { void begin(long) {} int available() { return 0; } int read() { return -1; }
                 size_t write(const uint8_t *, size_t n) { return n; } };
static SerialT Serial;
inline void pinMode(uint8_t, uint8_t) {}
inline void digitalWrite(uint8_t, uint8_t) {}
inline int analogRead(uint8_t) { return 0; }
inline unsigned long millis() { return 0; }
inline void noInterrupts() {}
inline void interrupts() {}
inline int digitalPinToInterrupt(int p) { return p; }
inline void attachInterrupt(int, void (*)(void), int) {}
"""


def test_sketch_and_cross_builds(tmp_path, clib):
    from firmware_bridge.sim.rccar.ccore import FIRMWARE_DIR

    if shutil.which("g++"):
        (tmp_path / "Arduino.h").write_text(ARDUINO_STUB)
        (tmp_path / "Servo.h").write_text("struct Servo { uint8_t attach(int) { return 0; } void writeMicroseconds(int) {} };\n")
        r = subprocess.run(["g++", "-x", "c++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                            f"-I{tmp_path}", f"-I{FIRMWARE_DIR}", "-include", "Arduino.h",
                            str(FIRMWARE_DIR / "edgectl_car.ino")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    if shutil.which("arm-none-eabi-gcc"):  # a 32-bit MCU target, same strict flags
        r = subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion",
                            "-mcpu=cortex-m0", "-mthumb", "-Os", "-c", str(FIRMWARE_DIR / "car_link.c"),
                            "-o", str(tmp_path / "car_link.o")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    assert clib.cl_link_size() < 160  # fits an ATmega328P's 2 KB next to the Arduino core


# --------------------------------------------------------------------------------------------
# bridge <-> simulated car over a pty
# --------------------------------------------------------------------------------------------
@pytest.fixture
def sim_car():
    from firmware_bridge.sim.rccar.sim_car import SimCar

    car = SimCar("rc_car_1_10").start()
    yield car
    car.close()
    assert car.stats.internal_errors == 0, car.stats.last_error


def drive(link, steer, throttle, seconds, rate=50.0):
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        link.send_command(steer, throttle)
        time.sleep(1.0 / rate)


def test_bridge_drives_the_sim_car(sim_car):
    with RcCarLink(sim_car.path) as link:
        s0 = link.wait_state(lambda s: s.armed, 1.0)
        assert s0.failsafe and s0.simulated  # armed, not yet commanded
        drive(link, 0.0, 0.6, 1.0)
        s = link.state()
        st = sim_car.state
        assert s.speed > 1.0 and st["x"] > 0.4 and abs(st["y"]) < 0.01 and not s.failsafe
        assert s.throttle == pytest.approx(0.6) and s.erpm > 1000 and 7.0 < s.battery < 8.3
        drive(link, 0.8, 0.4, 0.6)
        s = link.state()
        assert s.yaw_rate > 0.5 and sim_car.state["yaw"] > 0.3 and sim_car.state["y"] > 0.02  # + steer = left
        assert s.accel[1] > 0.5  # centripetal, to the left
        assert time.monotonic() - s.t < 0.1
        st = link.stats()
        assert 45.0 < st.telemetry_hz < 55.0, st
        assert st.rtt_ms["n"] >= 5 and st.rtt_ms["p95"] < 50.0, st.rtt_ms
        assert st.frames_bad == 0 and st.drops == 0 and st.late == 0
        print(f"telemetry {st.telemetry_hz:.1f} Hz, heartbeat RTT over a pty: {st.rtt_ms}")
    assert not sim_car.core.flags & Flag.ARMED  # leaving the block disarmed the car


def test_seq_gaps_counted_when_frames_are_dropped(sim_car):
    dropped = []

    def every_7th_telemetry(frame):
        pkt = P.decode_frame(frame[:-1])
        if isinstance(pkt.msg, P.Telemetry) and pkt.seq % 7 == 0:
            dropped.append(pkt.seq)
            return None
        return frame

    with RcCarLink(sim_car.path, arm=False) as link:
        sim_car.tx_hook = every_7th_telemetry
        time.sleep(0.8)
        sim_car.tx_hook = None
        n = link.stats().telemetry
        link.wait_state(lambda s: s.n >= n + 2, 1.0)
        st = link.stats()
        assert len(dropped) >= 4 and st.drops == len(dropped) and st.frames_bad == 0, (dropped, st)


@pytest.mark.parametrize("core", ["python", "c"])
def test_sim_car_watchdog_brakes_when_commands_stop(core, request):
    from firmware_bridge.sim.rccar.sim_car import SimCar

    if core == "c":
        request.getfixturevalue("clib")  # skips without gcc

    with SimCar(core=core) as car, RcCarLink(car.path, command_timeout_ms=100) as link:
        drive(link, 0.0, 0.7, 0.6)
        v = link.state().speed
        assert v > 0.8 and not link.state().failsafe
        t_stop = time.monotonic()
        s = link.wait_state(lambda s: s.failsafe, 0.5)  # no more commands
        assert 0.08 < s.t - t_stop < 0.3 and s.throttle == 0 and s.brake
        s = link.wait_state(lambda s: s.speed < 0.05, 1.0)  # braked to a stop, never reversed
        assert link.stats().car_errors == {"WATCHDOG": 1}
        assert min(car.state["vx"], s.speed) > -0.01
        drive(link, 0.0, 0.3, 0.2)  # commands again: failsafe clears
        assert not link.state().failsafe
    assert car.stats.internal_errors == 0


def test_malformed_input_never_crashes_the_sim_car(sim_car):
    rng = np.random.default_rng(3)
    with RcCarLink(sim_car.path, arm=False) as link:
        junk = [rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8).tobytes() for _ in range(50)]
        junk += [raw_frame(struct.pack("<hhH", 3000, 0, 200), MsgType.COMMAND), raw_frame(b"", 99),
                 raw_frame(b"", MsgType.ARM, version=0), raw_frame(b"\x01\x02", MsgType.DISARM),
                 raw_frame(b"", MsgType.ARM, crc_ok=False), b"\xff" * 500, b"\x00" * 50]
        for j in junk:
            link._write(j + b"\x00")
            time.sleep(0.002)
        n = link.stats().telemetry
        s = link.wait_state(lambda s: s.n >= n + 5, 1.0)  # still alive and talking
        assert s.car_rx_errors > 40
        errs = link.stats().car_errors
        assert {"VALUE", "TYPE", "VERSION", "LENGTH"} <= set(errs), errs
        c = sim_car.core.counters()
        assert c["overflow"] > 20 and c["crc"] + c["cobs"] + c["length"] > 10, c
        assert not s.armed  # garbage never armed the car
        link.arm()
        drive(link, 0.0, 0.5, 0.3)
        assert link.state().speed > 0.2


def test_connect_errors_name_the_port(tmp_path):
    with pytest.raises(RcCarLinkError, match="/nonexistent/ttyX"):
        RcCarLink("/nonexistent/ttyX").connect()
    import os
    import tty

    master, slave = os.openpty()  # a port where nobody answers
    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        with pytest.raises(RcCarLinkError, match=rf"{path}: no HEARTBEAT .* within 0.3 s; got nothing at all"):
            RcCarLink(path, connect_timeout=0.3).connect()
    finally:
        os.close(master)
        os.close(slave)


def test_loop_and_socket_urls():
    from firmware_bridge.sim.rccar.sim_car import SimCar

    with RcCarLink("loop://", arm=False) as link:  # hears itself: framing over pyserial, end to end
        link.send_command(0.5, -0.5)
        link._wait(lambda: link.stats().unexpected >= 1, 1.0)
        assert link.stats().frames_bad == 0 and link.stats().unexpected >= 1
    car = SimCar()
    url = car.serve_tcp("127.0.0.1", 0)
    with car, RcCarLink(url) as link:
        drive(link, 0.0, 0.5, 0.3)
        assert link.state().speed > 0.2


def test_cli_hook_serves_and_stops(capsys):
    from firmware_bridge.rccar.cli_hooks import sim_vehicle_main

    assert sim_vehicle_main(duration=0.3) == 0
    out = capsys.readouterr().out
    assert "serial port: /dev/" in out and "stopped after" in out
    assert sim_vehicle_main(uri="udp://x:1", echo=lambda s: None) == 2


# --------------------------------------------------------------------------------------------
# VESC
# --------------------------------------------------------------------------------------------
def _crc_xmodem_bitwise(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def test_vesc_packets_against_known_vectors():
    assert V.crc16(b"123456789") == 0x31C3  # CRC-16/XMODEM check value
    assert V.pack(V.get_values()) == bytes.fromhex("02 01 04 40 84 03")  # the classic GET_VALUES request
    assert V.set_duty(0.5) == bytes.fromhex("05 0000c350")           # 50000
    assert V.set_current(-2.5) == bytes([6]) + struct.pack(">i", -2500)
    assert V.set_rpm(12000) == bytes.fromhex("08 00002ee0")
    assert V.set_servo_pos(0.5) == bytes.fromhex("0c 01f4")
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes()
        assert V.crc16(p) == _crc_xmodem_bitwise(p)
        pk = V.pack(p)
        assert pk[0] == (2 if len(p) <= 255 else 3) and pk[-1] == 3 and V.unpack(pk) == p
    for bad in (lambda: V.set_duty(1.5), lambda: V.set_servo_pos(-0.1), lambda: V.set_current_brake(-1)):
        with pytest.raises(ValueError):
            bad()


def test_vesc_decoder_resyncs_and_values_round_trip():
    full = V.VescValues(temp_fet=35.2, temp_motor=-4.1, current_motor=-12.34, current_in=3.21, id=0.5, iq=-0.25,
                        duty=-0.123, erpm=-23250, v_in=16.8, amp_hours=1.2345, amp_hours_charged=0.1,
                        watt_hours=20.5, watt_hours_charged=1.5, tachometer=-123456, tachometer_abs=654321,
                        fault_code=2, pid_pos=123.456789, controller_id=7, temp_mos1=30.1, temp_mos2=30.2,
                        temp_mos3=30.3, vd=0.123, vq=-1.234, status=1)
    back = V.decode_values(V.encode_values(full))
    for k, v in full.__dict__.items():
        assert getattr(back, k) == pytest.approx(v, abs=1.01e-4 if k != "pid_pos" else 1e-6), k
    short = V.encode_values(V.VescValues(erpm=1000, v_in=12.0))  # an older firmware's reply
    assert len(short) == 54 and V.decode_values(short).erpm == 1000 and V.decode_values(short).pid_pos is None
    with pytest.raises(V.VescError, match="55 bytes"):
        V.decode_values(short + b"\x00")
    dec = V.VescDecoder()
    good = V.pack(V.encode_values(full))
    corrupted = bytearray(good)
    corrupted[10] ^= 0x10
    items = dec.feed(b"\x55\xaa" + bytes(corrupted) + good[:7])
    items += dec.feed(good[7:] + V.pack(V.alive()))
    payloads = [x for x in items if isinstance(x, bytes)]
    assert payloads == [V.encode_values(full), V.alive()] and dec.errors["crc"] == 1


def test_vesc_link_against_the_simulated_vesc():
    from firmware_bridge.sim.rccar.sim_vesc import SimVesc

    with SimVesc(timeout_s=0.3) as sim, VescLink(sim.path, timeout=0.5) as vesc:
        v0 = vesc.get_values()
        assert v0.v_in == pytest.approx(8.2) and v0.erpm == 0 and v0.controller_id == 0
        for _ in range(15):
            vesc.send_command(-0.4, 0.5)  # duty 0.5 * max_duty 0.3
            time.sleep(0.02)
        v = vesc.get_values()
        assert 0.1 < v.duty <= 0.15 and v.erpm > 1000 and vesc.speed(v) > 0.2
        assert sim.servo == pytest.approx(0.3) and sim.commands[-2][0] is V.Comm.SET_DUTY
        vesc.set_rpm(5000)
        vesc.set_current(1.5)
        vesc.set_brake_current(4.0)
        time.sleep(0.05)
        assert [c for c, _ in sim.commands[-3:]] == [V.Comm.SET_RPM, V.Comm.SET_CURRENT, V.Comm.SET_CURRENT_BRAKE]
        assert [x for _, x in sim.commands[-3:]] == [5000, 1.5, 4.0]
        time.sleep(0.4)  # the VESC's own timeout releases the motor
        assert sim.timeouts == 1 and sim.mode == "off"
        vesc._ser.write(b"\x02\x05garbage\x03" + V.pack(b"\x63"))  # noise and an unknown command
        assert vesc.get_values().erpm < v.erpm
        assert sim.decoder.bad >= 1 and sim.internal_errors == 0


def test_stand_in_dynamics_when_the_numba_car_is_missing(monkeypatch, caplog):
    import sys

    from firmware_bridge.sim.rccar import sim_car

    monkeypatch.setitem(sys.modules, "edgectl.plant.car", None)  # import now raises ImportError
    with caplog.at_level("WARNING"):
        car = sim_car.SimCar()
    assert car.model.startswith("kinematic bicycle stand-in") and "stand-in" in caplog.text
    assert car.names[:6] == ("x", "y", "yaw", "vx", "vy", "yaw_rate")
    s = car.dyn.initial_state(0.0, 0.0, 0.0)
    for _ in range(50):
        s = car.dyn.step(s, np.array([0.5, 0.8]), car.params)
    assert s[3] > 1.0 and s[2] > 0.1 and s[5] > 0.1  # drives forward, turns left
    for _ in range(100):
        s = car.dyn.step(s, np.array([0.0, -1.0]), car.params)
    assert 0.0 <= s[3] < 0.01  # brakes to a stop, no reverse
