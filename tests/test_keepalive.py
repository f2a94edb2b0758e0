"""edgectl.runtime.keepalive: repeats the newest command while it is fresh, and never after a pause."""
import threading
import time

import pytest

from edgectl.runtime.keepalive import KeepAlive


def test_repeats_the_newest_command_while_fresh_then_goes_quiet():
    got, lock = [], threading.Lock()

    def send(*m):
        with lock:
            got.append((time.monotonic(), m))
    k = KeepAlive(send, period_s=0.005, max_age_s=0.1)
    try:
        time.sleep(0.05)
        assert got == []  # nothing given yet, nothing repeated
        k.update(1.0, 2.0)
        t0 = time.monotonic()
        time.sleep(0.3)
        with lock:
            sent = list(got)
        assert sent and all(m == (1.0, 2.0) for _, m in sent)
        # every 5 ms for 100 ms: 20, fewer if the 2-core machine descheduled the thread; none after max_age
        assert 5 <= len(sent) <= 21 and sent[-1][0] - t0 <= 0.1 + 0.02
        k.update(3.0)
        time.sleep(0.03)
        assert got[-1][1] == (3.0,)
        k.pause()
        time.sleep(0.01)  # a repeat already under way may still land
        n = len(got)
        time.sleep(0.05)
        assert len(got) == n  # paused: a stop command is never followed by a repeat
    finally:
        k.close()


def test_a_failing_send_stops_the_repeats_and_is_kept():
    calls = []

    def send(*m):
        calls.append(m)
        raise OSError("link gone")
    k = KeepAlive(send, period_s=0.002, max_age_s=0.1)
    try:
        k.update("x")
        time.sleep(0.05)
        assert len(calls) == 1 and isinstance(k.error, OSError)
    finally:
        k.close()


def test_bad_periods_are_refused():
    with pytest.raises(ValueError, match="period_s"):
        KeepAlive(lambda: None, period_s=0.01, max_age_s=0.005)
