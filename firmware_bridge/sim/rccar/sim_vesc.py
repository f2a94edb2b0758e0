"""A simulated VESC on a pty: answers COMM_GET_VALUES, obeys SET_DUTY / SET_CURRENT /
SET_CURRENT_BRAKE / SET_RPM / SET_SERVO_POS / ALIVE, and releases the motor after ``timeout_s``
without a command, as the VESC's app timeout does. The motor is a first-order eRPM lag: enough to
check a host's encoding, decoding and timeout handling, not a motor model.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from firmware_bridge.rccar import vesc as V
from .sim_car import _Pty
from firmware_bridge.rccar.vesc import Comm

log = logging.getLogger(__name__)


class SimVesc:
    def __init__(self, *, max_erpm: float = 30000.0, tau_s: float = 0.2, v_in: float = 8.2, timeout_s: float = 1.0,
                 controller_id: int = 0):
        self.max_erpm, self.tau_s, self.timeout_s = max_erpm, tau_s, timeout_s
        self.values = V.VescValues(temp_fet=31.5, temp_motor=28.0, v_in=v_in, pid_pos=0.0,
                                   controller_id=controller_id, temp_mos1=31.5, temp_mos2=31.4, temp_mos3=31.6,
                                   vd=0.0, vq=0.0, status=0)
        self.mode, self.target = "off", 0.0
        self.servo = 0.5
        self.commands: list[tuple[V.Comm, float | None]] = []
        self.timeouts = 0
        self.internal_errors = 0
        self._dec = V.VescDecoder()
        self._io = _Pty()
        self.path = self._io.path
        self._last_cmd = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def decoder(self) -> V.VescDecoder:
        return self._dec

    def start(self) -> "SimVesc":
        self._thread = threading.Thread(target=self._run, name="sim-vesc", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._io.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _run(self) -> None:
        t_prev = time.monotonic()
        while not self._stop.is_set():
            try:
                data = self._io.read(0.01)
                now = time.monotonic()
                self._physics(now - t_prev, now)
                t_prev = now
                for item in self._dec.feed(data) if data else ():
                    if isinstance(item, bytes):
                        self._handle(item, now)
            except Exception:  # never die on what the host sends
                self.internal_errors += 1
                log.exception("sim vesc: loop error")

    def _handle(self, payload: bytes, now: float) -> None:
        try:
            cmd, value = V.decode_command(payload)
        except V.VescError as e:
            log.info("sim vesc: ignoring %s", e)
            return
        with self._lock:
            self.commands.append((cmd, value))
        if cmd is Comm.GET_VALUES:
            self._io.write(V.pack(V.encode_values(self.values)))
            return
        if cmd is Comm.SET_SERVO_POS:
            self.servo = min(max(value, 0.0), 1.0)
            return
        self._last_cmd = now  # as timeout_reset() in the firmware: any motor command or ALIVE
        if cmd is not Comm.ALIVE:
            self.mode, self.target = {Comm.SET_DUTY: "duty", Comm.SET_CURRENT: "current",
                                      Comm.SET_CURRENT_BRAKE: "brake", Comm.SET_RPM: "rpm"}[cmd], value

    def _physics(self, dt: float, now: float) -> None:
        if self.mode != "off" and now - self._last_cmd > self.timeout_s:
            self.mode, self.target = "off", 0.0
            self.timeouts += 1
        v = self.values
        if self.mode == "duty":
            goal, duty = self.target * self.max_erpm, self.target
        elif self.mode == "rpm":
            goal, duty = self.target, self.target / self.max_erpm
        elif self.mode == "current":
            goal, duty = v.erpm + self.target * 2000.0 * dt, v.erpm / self.max_erpm
        else:  # off, brake: coast / brake down
            goal, duty = 0.0, 0.0
        tau = self.tau_s / (4.0 if self.mode == "brake" else 1.0)
        erpm = v.erpm + (goal - v.erpm) * min(1.0, dt / tau)
        steps = erpm * dt / 60.0 * 6.0  # the tachometer counts 6 steps per electrical revolution
        self.values = replace(v, erpm=erpm, duty=duty, tachometer=v.tachometer + steps,
                              tachometer_abs=v.tachometer_abs + abs(steps),
                              current_motor=self.target if self.mode in ("current", "brake") else 0.0)

