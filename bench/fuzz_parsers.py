"""Fuzz every parser that reads bytes from a vehicle link: CRTP (simulated Crazyflie), MAVLink (pymavlink as the
bridge and the simulated vehicle use it) and the RC-car serial protocol.

Two kinds of input per parser: random frames (must never raise out of the parser) and single-bit corruptions of
valid frames (must never be accepted: CRC-16 catches every single-bit error). CRTP has no CRC at this layer (the
radio's link layer checks it), so for CRTP the check is that nothing raises and the vehicle still answers after.

    python3 bench/fuzz_parsers.py [--frames 100000] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MAVLINK20", "1")


def fuzz_crtp(n: int, seed: int = 0) -> dict:
    from firmware_bridge.crazyflie import crtp
    from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim
    rng = random.Random(seed)
    sim = CrazyflieSim(realtime=False)
    replies: list[bytes] = []
    link = sim.open_link(replies.append, name="fuzz")
    raised = 0
    for _ in range(n):
        port = rng.choice([0, 2, 3, 4, 5, 7, 8, 9, 13, 15, rng.randrange(16)])
        body = rng.randbytes(rng.randrange(0, 32))
        raw = bytes([((port & 0xF) << 4) | rng.randrange(4)]) + body if rng.random() < 0.95 else rng.randbytes(rng.randrange(0, 40))
        try:
            link.send(raw)
        except Exception:  # noqa: BLE001  what the fuzz counts
            raised += 1
    replies.clear()
    link.send(crtp.packet(crtp.LINK, crtp.LINK_SOURCE, b"\0"))
    alive = any(r[1:].startswith(b"Bitcraze Crazyflie") for r in replies)
    sim.close()
    return {"frames": n, "raised": raised, "still_answers": alive}


SIGNING_KEY = bytes(range(32))


def fuzz_mavlink(n: int, seed: int = 0, *, version: int = 2, signed: bool = False) -> dict:
    """`version` 1 or 2: the wire format of the valid frames that get corrupted (the receiver is the MAVLink 2
    parser, which reads both, as mavutil connections do). `signed`: the frames are signed (MAVLink 2 only) and
    the receiver has the key, as a vehicle with signing on (unsigned and wrong-signature frames are rejected)."""
    from firmware_bridge.mavlink._mav import mavutil
    mavlink = mavutil.mavlink
    if signed and version != 2:
        raise ValueError("MAVLink 1 frames cannot be signed")
    rng = random.Random(seed)
    tx = mavlink.MAVLink(None, srcSystem=255, srcComponent=190)
    if signed:
        tx.signing.secret_key, tx.signing.sign_outgoing, tx.signing.link_id = SIGNING_KEY, True, 1
        tx.signing.timestamp = 1000
    v1 = version == 1
    msgs = [tx.command_long_encode(1, 1, 400, 0, 1, 0, 0, 0, 0, 0, 0),
            tx.set_attitude_target_encode(0, 1, 1, 0, [1, 0, 0, 0], 0, 0, 0, 0.5),
            tx.heartbeat_encode(6, 8, 0, 0, 0)]

    def receiver():
        r = mavlink.MAVLink(None)
        r.robust_parsing = True  # what mavutil connections (bridge and simulated vehicle) use: bad bytes -> BAD_DATA
        if signed:
            r.signing.secret_key = SIGNING_KEY  # as conn.setup_signing(key, allow_unsigned_callback=None)
        return r
    # the receiver takes the valid frames (else "nothing accepted" would prove nothing)
    check = receiver()
    valid_ok = sum(sum(m.get_type() != "BAD_DATA" for m in (check.parse_buffer(msg.pack(tx, force_mavlink1=v1)) or []))
                   for msg in msgs)
    valid = [msg.pack(tx, force_mavlink1=v1) for msg in msgs]
    rx = receiver()
    raised = accepted_corrupt = unknown_ids = 0
    for i in range(n):
        frame = bytearray(rng.choice(valid))
        bit = rng.randrange(8 * len(frame))
        frame[bit // 8] ^= 1 << (bit % 8)
        data = bytes(frame) if i % 2 == 0 else rng.randbytes(rng.randrange(1, 300))
        try:
            msgs_out = rx.parse_buffer(data) or []
        except Exception:  # noqa: BLE001  pymavlink raises on some garbage: the bridge must catch it
            raised += 1
            rx = receiver()
            continue
        if i % 2 == 0:
            # a flipped msgid bit gives an id pymavlink does not know, so it cannot check the CRC (no CRC_EXTRA)
            # and hands back UNKNOWN_<id>; the bridge and the vehicle dispatch on known types only and ignore them
            types = [m.get_type() for m in msgs_out if m.get_type() != "BAD_DATA"]
            unknown_ids += sum(t.startswith("UNKNOWN_") for t in types)
            accepted_corrupt += sum(not t.startswith("UNKNOWN_") for t in types)
    return {"frames": n, "parser_raised": raised, "corrupted_accepted": accepted_corrupt,
            "corrupted_as_unknown_id": unknown_ids, "valid_accepted": f"{valid_ok}/{len(msgs)}"}


def fuzz_serial(n: int, seed: int = 0) -> dict:
    from firmware_bridge.rccar import protocol as P
    rng = random.Random(seed)
    valid = [P.encode(P.Command(rng.randrange(-1000, 1001), rng.randrange(-1000, 1001), 200), s) for s in range(64)]
    dec = P.FrameDecoder()
    raised = accepted_corrupt = 0
    for i in range(n):
        frame = bytearray(rng.choice(valid))
        bit = rng.randrange(8 * (len(frame) - 1))  # not the delimiter: that only splits the frame
        frame[bit // 8] ^= 1 << (bit % 8)
        data = bytes(frame) if i % 2 == 0 else rng.randbytes(rng.randrange(1, 60)) + b"\0"
        try:
            out = dec.feed(data)
        except Exception:  # noqa: BLE001
            raised += 1
            dec = P.FrameDecoder()
            continue
        if i % 2 == 0:
            accepted_corrupt += sum(1 for x in out if isinstance(x, P.Packet))
    return {"frames": n, "raised": raised, "corrupted_accepted": accepted_corrupt}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = {}
    for name, fn in (("crtp", fuzz_crtp), ("mavlink", fuzz_mavlink), ("serial", fuzz_serial)):
        t0 = time.time()
        out[name] = fn(args.frames) | {"seconds": round(time.time() - t0, 2)}
        print(f"{name:8s} {out[name]}")
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
