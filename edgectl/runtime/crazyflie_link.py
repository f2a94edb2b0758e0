"""A Crazyflie flying the exported policy on board, as the control loop sees it.

The real firmware takes no motor commands from the host: the policy runs in the edgectl app
(`edgectl export --target crazyflie`, the out-of-tree controller, stabilizer.controller = 6), so
this link streams the reference as a position setpoint every tick and reads back the state and the
app's edgectl log group (engaged, fault, forces). The host keeps what it can do from the ground: the
fixed-rate loop, its own STL monitor, the flight log, and noticing a silent link; the rescue on a
cut link is the app's own watchdog and backup, because a cut link carries nothing either way.

Works with any cflib URI: radio://, usb://, udp:// (`edgectl sim-vehicle crazyflie --bundle ...`)
and cfsim://NAME (a simulated Crazyflie in this process).
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np

from firmware_bridge.crazyflie.onboard import BUNDLE_PARAM, DEFAULT_LINK_TIMEOUT_S, LINK_PARAM, LINK_TIMEOUT_S, bundle_id

from .keepalive import KeepAlive
from .protocol import State

# 26 bytes: a full log block (CRTP log data carries at most 26 bytes of variables)
APP_LOG = ("edgectl.engaged", "edgectl.fault", "edgectl.steps", "edgectl.linkdrops", "edgectl.f1", "edgectl.f2",
           "edgectl.f3", "edgectl.f4")
CONTROLLER_OOT = 6
FAULT_NAMES = {1: "non-finite observation", 2: "non-finite action", 3: "on-board safety monitor", 4: "link watchdog"}
NOT_OUR_APP = "flash an app built with edgectl export --target crazyflie"


class CrazyflieOnboardLink:
    onboard = True  # the policy runs on the vehicle: the loop sends references, not actions
    default_ref = (0.0, 0.0, 1.0)  # z = 0 is the floor on a Crazyflie

    def __init__(self, uri: str, platform, *, connect_timeout: float = 10.0, takeoff_speed: float = 0.4,
                 settle_s: float = 1.0, rate_hz: float = 100.0, bundle=None):
        """``bundle``: the bundle the host means to fly (edgectl.bundle.Bundle); the vehicle's app must have been
        exported from it, checked before anything is armed."""
        from firmware_bridge.crazyflie.bridge import CrazyflieLink, LinkError

        self.uri, self.name = uri, f"crazyflie {uri} (policy on board)"
        self.takeoff_speed, self.settle_s, self.rate_hz = float(takeoff_speed), float(settle_s), float(rate_hz)
        from edgectl.platforms import rotor_model
        self.thrust_shape = tuple(rotor_model(platform)["thrust_shape"])
        try:
            self.link = CrazyflieLink(uri, connect_timeout=connect_timeout)
        except ImportError:
            raise  # the CLI names the extra that brings the missing package
        except (LinkError, TimeoutError, OSError, Exception) as e:  # noqa: BLE001  cflib raises plain Exceptions for bad URIs
            raise ValueError(f"--uri {uri}: could not connect to a Crazyflie: {e}") from None
        self._status: dict | None = None
        self._lock = threading.Lock()
        self._flying = False
        # The app's link watchdog acts on 6 ms of silence: repeat the newest reference every 2 ms.
        self._keepalive = KeepAlive(self._repeat_reference, name="edgectl-cf-keepalive")
        try:
            toc = self.link.cf.log.toc
            missing = [n for n in APP_LOG if toc.get_element_by_complete_name(n) is None]
            if missing:
                raise ValueError(f"--uri {uri}: the vehicle does not carry the edgectl app (its firmware logs no "
                                 f"{', '.join(missing)}): {NOT_OUR_APP}, then edgectl build-firmware and "
                                 f"edgectl flash --uri {uri}")
            if bundle is not None:
                self._check_bundle(bundle)
            self._start_app_log()
            self.link.set_param("stabilizer.controller", CONTROLLER_OOT)
            self._wait_param("stabilizer.controller", CONTROLLER_OOT)
            # our keep-alive repeats every 2 ms: the app may call 6 ms of silence a cut (its default, 50 ms,
            # is for slower setpoint sources); put back on close
            self._set_link_timeout(LINK_TIMEOUT_S)
            self.link.arm(True)
        except BaseException:
            self._keepalive.close()
            self.link.close()
            raise

    # -- setup --------------------------------------------------------------------------------------
    def _start_app_log(self):
        from cflib.crazyflie.log import LogConfig

        config = LogConfig(name="edgectl_app", period_in_ms=10)
        for name in APP_LOG:
            config.add_variable(name)
        config.data_received_cb.add_callback(self._on_status)
        self.link.cf.log.add_config(config)
        config.start()

    def _on_status(self, timestamp, data, _config):
        with self._lock:
            self._status = {"t": time.monotonic(), "engaged": int(data["edgectl.engaged"]),
                            "fault": int(data["edgectl.fault"]), "steps": int(data["edgectl.steps"]),
                            "link_drops": int(data["edgectl.linkdrops"]),
                            "forces": np.array([data[f"edgectl.f{i}"] for i in range(1, 5)], float)}

    def _check_bundle(self, bundle) -> None:
        want = bundle_id(bundle.manifest)
        try:
            got = int(float(self.link.get_param(BUNDLE_PARAM)))
        except Exception:  # noqa: BLE001  cflib raises KeyError / plain Exceptions for unknown parameters
            raise ValueError(f"--uri {self.uri}: the vehicle's edgectl app has no parameter {BUNDLE_PARAM} (built by an "
                             f"older edgectl), so it cannot say which bundle it flies: {NOT_OUR_APP} from "
                             f"{bundle.path}") from None
        if got != want:
            raise ValueError(f"--uri {self.uri}: the vehicle's edgectl app was exported from another bundle "
                             f"({BUNDLE_PARAM} = 0x{got:08x}, {bundle.path.name} is 0x{want:08x}): fly the bundle it "
                             f"carries, or flash this one (edgectl export {bundle.path} --target crazyflie, "
                             f"edgectl build-firmware, edgectl flash --uri {self.uri})")

    def _set_link_timeout(self, seconds: float) -> None:
        ms = round(1000 * seconds)
        try:
            self.link.set_param(LINK_PARAM, ms)
        except Exception as e:  # noqa: BLE001  cflib raises KeyError / plain Exceptions for unknown parameters
            raise ValueError(f"--uri {self.uri}: the vehicle's edgectl app has no parameter {LINK_PARAM} ({e}): it was "
                             f"built by an older edgectl; {NOT_OUR_APP}") from None
        self._wait_param(LINK_PARAM, ms)

    def _wait_param(self, name: str, want, timeout: float = 2.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if int(float(self.link.get_param(name))) == want:
                    return
            except (KeyError, ValueError, TypeError):
                pass
            time.sleep(0.02)
        raise ValueError(f"--uri {self.uri}: {name} did not become {want} (the firmware has no out-of-tree "
                         f"controller?): {NOT_OUR_APP}")

    def start(self, ref) -> None:
        """Take off: the reference climbs from where the vehicle sits to ``ref`` at takeoff_speed, then
        holds for settle_s; a jump would start the app outside the platform's safety box."""
        ref = np.asarray(ref, float)
        s = self.link.next_state(timeout=1.0) or self.link.read_state()
        if s is None:
            raise ValueError(f"--uri {self.uri}: no state from the vehicle before take-off")
        start = np.array(s.pos, float)
        dist = float(np.linalg.norm(ref - start))
        n_ramp = int(math.ceil(dist / self.takeoff_speed * self.rate_hz))
        n = n_ramp + int(self.settle_s * self.rate_hz)
        t0 = time.perf_counter()
        self._flying = True
        for k in range(n):
            f = min(1.0, (k + 1) / max(n_ramp, 1))
            self.send_reference(start + f * (ref - start))
            delay = t0 + (k + 1) / self.rate_hz - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    # -- the loop's side ----------------------------------------------------------------------------
    def read_state(self) -> State | None:
        s = self.link.read_state()
        if s is None:
            return None
        return State(s.t, s.pos, s.quat_wxyz, s.vel, s.omega)

    def vehicle_status(self) -> dict | None:
        """The app's log group: engaged, fault (0 none, else FAULT_NAMES), steps, forces, t (host time)."""
        with self._lock:
            return None if self._status is None else dict(self._status)

    def forces_to_action(self, forces) -> np.ndarray:
        """Normalized forces back to the contract's action (the platform's thrust curve), for the flight log."""
        from edgectl.platforms import motor_for_fraction
        u = motor_for_fraction(np.clip(np.asarray(forces, float), 0.0, 1.0), *self.thrust_shape)
        return np.clip(2.0 * u - 1.0, -1.0, 1.0)

    def send_reference(self, ref) -> None:
        from firmware_bridge.crazyflie.bridge import LinkError
        ref = tuple(float(v) for v in ref)
        try:
            self.link.send_position(*ref)
        except LinkError:
            return  # cflib gave the link up: the app's watchdog is flying; the loop notices the silence
        self._keepalive.update(ref)

    def _repeat_reference(self, ref) -> None:
        self.link.send_position(*ref)

    def send_action(self, action) -> None:
        raise RuntimeError(f"{self.name}: the policy runs on the vehicle; the host sends references, not motor commands")

    def land(self, speed: float = 0.4, floor_z: float = 0.03) -> None:
        """Bring the reference down to the floor, then stop the motors (the end of a normal run)."""
        s = self.link.read_state()
        if s is None or not self._flying:
            return
        start = np.array(s.pos, float)
        n = int(math.ceil(max(0.0, start[2] - floor_z) / speed * self.rate_hz)) + int(0.5 * self.rate_hz)
        t0 = time.perf_counter()
        for k in range(n):
            z = max(floor_z, start[2] - speed * (k + 1) / self.rate_hz)
            self.send_reference((start[0], start[1], z))
            delay = t0 + (k + 1) / self.rate_hz - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        self.stop()

    def stop(self) -> None:
        self._flying = False
        self._keepalive.pause()
        self.link.stop()

    def close(self) -> None:
        """Land if the vehicle still hears us; if it does not, its app's backup is landing it, and a stop
        setpoint arriving later would cut the motors in the air, so none is sent."""
        heard = self.link.read_state() is not None
        try:
            if self._flying and heard:
                self.land()
        finally:
            self._keepalive.close()
            if heard:
                try:  # for whoever flies it next without a keep-alive
                    self.link.set_param(LINK_PARAM, round(1000 * DEFAULT_LINK_TIMEOUT_S))
                except Exception:  # noqa: BLE001  best effort: the link may be going
                    pass
            self.link.close(stop_motors=heard)
