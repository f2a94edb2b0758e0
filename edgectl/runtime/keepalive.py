"""Repeat the host's newest command between control periods, so that a vehicle can tell a cut link
from a quiet one within a fraction of a control period.

A vehicle cannot see a link cut; it can only see that nothing came for a while. With one packet per
10 ms control period, "nothing for a while" has to be longer than a period plus the host's jitter, and
the backup would take over 10-20 ms after the cut at best. Repeating the newest command every
`period_s` (2 ms) lets the vehicle's watchdog use a threshold of a few milliseconds (the Crazyflie app:
onboard.LINK_TIMEOUT_S; the simulated MAVLink vehicle: actuator_timeout), so its backup flies within
one control period of the cut.

Only a command younger than `max_age_s` is repeated: a host loop that stalls or dies goes quiet, and
the vehicle's watchdog sees that too, instead of flying on a repeated stale command forever.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

PERIOD_S = 0.002  # 500 Hz: the vehicles' link thresholds (6 ms) leave 4 ms for the host's jitter
MAX_AGE_S = 0.02  # two 100 Hz control periods


class KeepAlive:
    """``send(*message)`` is called from a daemon thread every ``period_s`` with the newest message given to
    ``update``, while that message is younger than ``max_age_s``. ``send`` must be thread-safe with the
    caller's own sends; an exception from it is kept in ``error`` and stops the repeats (the control loop
    sees the link's own failure on its next send)."""

    def __init__(self, send: Callable[..., Any], *, period_s: float = PERIOD_S, max_age_s: float = MAX_AGE_S,
                 name: str = "edgectl-keepalive"):
        if not period_s > 0 or not max_age_s >= period_s:
            raise ValueError(f"KeepAlive: need 0 < period_s <= max_age_s, got {period_s!r}, {max_age_s!r}")
        self.send, self.period_s, self.max_age_s = send, float(period_s), float(max_age_s)
        self.repeats = 0
        self.error: BaseException | None = None
        self._message: tuple | None = None
        self._at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def update(self, *message) -> None:
        """The command the caller just sent itself (repeats start one period later)."""
        with self._lock:
            self._message, self._at = message, time.monotonic()

    def pause(self) -> None:
        """Stop repeating until the next ``update`` (a stop command must not be followed by flight commands)."""
        with self._lock:
            self._message = None

    def close(self) -> None:
        self.pause()
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)

    def _run(self) -> None:
        next_t = time.monotonic() + self.period_s
        while not self._stop.is_set():
            delay = next_t - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            now = time.monotonic()
            next_t += self.period_s
            if next_t <= now:  # late (descheduled): repeat now, and the next one a full period later, no burst
                next_t = now + self.period_s
            with self._lock:
                message = self._message if self._message is not None and now - self._at <= self.max_age_s else None
            if message is None:
                continue
            try:
                self.send(*message)
                self.repeats += 1
            except BaseException as e:  # noqa: BLE001  the link is gone: the loop finds out on its own send
                self.error = e
                with self._lock:
                    self._message = None
