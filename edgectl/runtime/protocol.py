"""What the control loop asks of a vehicle link: the state it reads and the calls it makes.

Links (edgectl.runtime.links, edgectl.runtime.crazyflie_link, the vehicle adapters in firmware_bridge) implement
``Link``; ``State`` is what they report. Kept apart from links.py so an adapter can import it without the URI
dispatch in links.py importing that adapter back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class State:
    """t: host time.monotonic() when it was measured; world z up, body FLU, quaternion wxyz, rad/s."""
    t: float
    pos: np.ndarray
    quat: np.ndarray
    vel: np.ndarray
    omega: np.ndarray


class Link(Protocol):
    name: str

    def read_state(self) -> State | None: ...
    def send_action(self, action: np.ndarray) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...
