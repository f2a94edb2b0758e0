"""cflib's drivers, and an in-process cflib driver for ``cfsim://name`` URIs.

The vehicle's side of a link (its UDP server, firmware_bridge/sim/crazyflie/udp.py, and the simulated vehicle
itself) lives in firmware_bridge/sim/; this module knows a registered vehicle only as an object with
``open_link(send, name=...)``, so the link side never imports a simulated vehicle.

In-process: ``SimDriver`` is a ``cflib.crtp.crtpdriver.CRTPDriver`` that cflib finds through
``cflib.crtp.CLASSES`` like its own drivers, so ``Crazyflie``, ``SyncCrazyflie`` and ``Cloader`` run
unmodified, without UDP's packet loss or ports. Query strings are ignored (Cloader appends
``?safelink=0``).
"""
from __future__ import annotations

import queue
import threading
import time

SCHEME = "cfsim://"  # edgectl/runtime/uri.py: sim:// is the in-process task simulation
_registry: dict[str, object] = {}  # name -> a vehicle with open_link(send, name=...) (CrazyflieSim)
_registry_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------
# In-process cflib driver
# ---------------------------------------------------------------------------------------------
def register_vehicle(name: str, sim) -> str:
    if not name or "?" in name or name != name.strip("/"):
        raise ValueError(f"sim vehicle name {name!r}: use a plain name like 'crazyflie/0'")
    with _registry_lock:
        if name in _registry and _registry[name] is not sim:
            raise ValueError(f"{SCHEME}{name}: another simulated vehicle is registered under this name")
        _registry[name] = sim
    register_driver()
    return SCHEME + name


def unregister_vehicle(name: str, sim) -> None:
    with _registry_lock:
        if _registry.get(name) is sim:
            del _registry[name]


def ensure_drivers(uri: str = "") -> None:
    """cflib's drivers initialized (once), and ours for cfsim:// URIs."""
    import cflib.crtp
    from cflib.crtp.udpdriver import UdpDriver

    if UdpDriver not in cflib.crtp.CLASSES:  # init_drivers() appends on every call: call it once
        cflib.crtp.init_drivers()
    if uri.startswith(SCHEME):
        register_driver()


def register_driver() -> None:
    """Make ``cfsim://`` URIs known to cflib (idempotent)."""
    import cflib.crtp

    if SimDriver not in cflib.crtp.CLASSES:
        cflib.crtp.CLASSES.append(SimDriver)


def _make_driver_class():
    from cflib.crtp.crtpdriver import CRTPDriver
    from cflib.crtp.crtpstack import CRTPPacket
    from cflib.crtp.exceptions import WrongUriType

    class SimDriver(CRTPDriver):
        """cflib link driver for ``cfsim://name`` URIs."""

        def __init__(self):
            super().__init__()
            self.needs_resending = False  # lossless, like UDP's setting (cflib resends on radio only)
            self._link = None  # the vehicle's end of the link (firmware_bridge.sim.crazyflie.sim_vehicle.SimLink)
            self._in: queue.Queue = queue.Queue()
            self.uri = ""
            self._stats_cb = None
            self._stats_at = 0.0

        def connect(self, uri, radio_link_statistics_callback, link_error_callback):
            if not uri.startswith(SCHEME):
                raise WrongUriType("Not a sim URI")
            name = uri[len(SCHEME):].split("?", 1)[0]
            with _registry_lock:
                sim = _registry.get(name)
                known = sorted(_registry)
            if sim is None:
                raise ConnectionError(f"{uri}: no simulated vehicle is registered as {name!r} "
                                      f"(registered: {known or 'none'}); start one with CrazyflieSim().serve_inprocess()")
            self.uri = uri
            self._stats_cb = radio_link_statistics_callback
            self._link = sim.open_link(self._in.put, name=f"in-process {uri}")

        def send_packet(self, pk):
            if self._link is None:
                return
            self._link.send(bytes((pk.header,)) + bytes(pk.data))
            self._report_quality()

        def _report_quality(self):
            # cflib's radio driver reports link quality; a lossless link is 100 %, a dropped one 0 %.
            now = time.monotonic()
            if self._stats_cb is None or now - self._stats_at < 0.1:
                return
            self._stats_at = now
            self._stats_cb({"link_quality": 0.0 if self._link.dead else 100.0})

        def receive_packet(self, wait=0):
            try:
                if wait == 0:
                    raw = self._in.get_nowait()
                elif wait < 0:
                    raw = self._in.get()
                else:
                    raw = self._in.get(timeout=wait)
            except queue.Empty:
                return None
            if raw is None:  # close() wakes a blocked reader so cflib's threads stop at once
                return None
            return CRTPPacket(raw[0], raw[1:])

        def get_status(self):
            return "simulated" if self._link is not None and not self._link.dead else "no link"

        def get_name(self):
            return "sim"

        def scan_interface(self, address=None):
            with _registry_lock:
                return [[SCHEME + name, "edgectl simulated Crazyflie"] for name in sorted(_registry)]

        def enum(self):
            return self.scan_interface()

        def get_help(self):
            return "cfsim://<name>: an edgectl simulated Crazyflie in this process"

        def close(self):
            if self._link is not None:
                self._link.close()
                self._link = None
            self._in.put(None)

    return SimDriver


SimDriver = _make_driver_class()
