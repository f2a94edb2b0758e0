"""Camera sources for image policies (the `avoid` task), and the in-process obstacle-field flight behind
`edgectl run AVOID_BUNDLE --uri sim://`. numpy only (OpenCV optional): no JAX on the robot side.

A camera source returns one (height, width) float32 image in the units of the bundle's contract
(`contract.observation.image`): depth in metres along the optical axis, clipped to [min, max] range, no
return = max range, each pixel the minimum over its block; or intensity in [0, 1], each pixel the block
mean. Sources:
- `SimCamera`: renders the same raycaster as training (edgectl/scene.py) from a simulated vehicle, with
  the bundle's camera noise;
- `OpenCVCamera`: a V4L2/USB camera through OpenCV (optional dependency), converted to gray and
  area-resized to the contract's shape; a 16-bit depth stream (millimetres) is min-pooled instead.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgectl import scene as sc
from edgectl.contract import observation_slices


class CameraSource(Protocol):
    def read(self) -> np.ndarray: ...  # (height, width) float32 in contract units
    def close(self) -> None: ...


@dataclass(frozen=True)
class ImageSpec:
    field: str
    kind: str  # depth | gray
    height: int
    width: int
    hfov_deg: float
    supersample: int
    min_range: float
    max_range: float

    @classmethod
    def from_contract(cls, contract: dict) -> "ImageSpec":
        im = contract["observation"].get("image")
        if not isinstance(im, dict):
            raise ValueError("the bundle's contract has no observation.image: it is not an image policy")
        return cls(field=im["field"], kind=im["kind"], height=int(im["height"]), width=int(im["width"]),
                   hfov_deg=float(im["hfov_deg"]), supersample=int(im["supersample"]),
                   min_range=float(im["min_range_m"]), max_range=float(im["max_range_m"]))

    def camera(self) -> sc.CameraSpec:
        return sc.CameraSpec(width=self.width, height=self.height, supersample=self.supersample,
                             hfov_deg=self.hfov_deg, min_range=self.min_range, max_range=self.max_range)


# --- OpenCV / V4L2 ------------------------------------------------------------------------------------
def frame_to_image(frame: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """A camera frame -> the contract's image. gray: BGR/gray 8-bit -> luminance in [0, 1], area
    resize; depth: uint16 millimetres (0 = no return) -> metres, block minimum, clipped."""
    f = np.asarray(frame)
    if spec.kind == "gray":
        if f.ndim == 3:
            f = f[..., 2] * 0.299 + f[..., 1] * 0.587 + f[..., 0] * 0.114  # OpenCV frames are BGR
        f = f.astype(np.float32) / (255.0 if frame.dtype == np.uint8 else 1.0)
        return _block(f, spec.height, spec.width, np.mean).clip(0.0, 1.0).astype(np.float32)
    if f.ndim != 2:
        raise ValueError(f"a depth camera frame must be one channel (uint16 millimetres), got shape {f.shape}")
    d = f.astype(np.float32) / 1000.0
    d = np.where(d <= 0.0, spec.max_range, d)
    return _block(d, spec.height, spec.width, np.min).clip(spec.min_range, spec.max_range).astype(np.float32)


def _block(img: np.ndarray, h: int, w: int, fn) -> np.ndarray:
    """Reduce over (almost) equal blocks: rows/columns are split by rounding, so any input size works."""
    rows = np.linspace(0, img.shape[0], h + 1).round().astype(int)
    cols = np.linspace(0, img.shape[1], w + 1).round().astype(int)
    out = np.empty((h, w), np.float32)
    for i in range(h):
        for j in range(w):
            out[i, j] = fn(img[rows[i]:max(rows[i + 1], rows[i] + 1), cols[j]:max(cols[j + 1], cols[j] + 1)])
    return out


class OpenCVCamera:
    """A V4L2/USB camera (`device`: index or path) through OpenCV; `depth=True` for a 16-bit depth stream."""

    def __init__(self, spec: ImageSpec, device: int | str = 0, depth: bool | None = None):
        try:
            import cv2
        except ImportError:
            raise RuntimeError("OpenCVCamera needs OpenCV: pip install opencv-python-headless "
                               "(or use the simulated camera: edgectl run BUNDLE --uri sim://)") from None
        depth = spec.kind == "depth" if depth is None else depth
        if depth != (spec.kind == "depth"):
            raise ValueError(f"the bundle's policy sees a {spec.kind} image; this camera gives "
                             f"{'depth' if depth else 'intensity'}")
        self.spec, self._cv2 = spec, cv2
        self.cap = cv2.VideoCapture(device)
        if depth:
            self.cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
        if not self.cap.isOpened():
            raise RuntimeError(f"OpenCV could not open camera {device!r}")

    def read(self) -> np.ndarray:
        ok, frame = self.cap.read()
        if not ok:
            raise RuntimeError("camera read failed")
        return frame_to_image(frame, self.spec)

    def close(self) -> None:
        self.cap.release()


# --- the simulated world: vehicle, scene, camera --------------------------------------------------------
@dataclass
class AvoidSim:
    """The avoid task's vehicle (first-order lateral/vertical velocity tracking at constant forward speed,
    edgectl/scene.py) flying through one numpy-sampled obstacle field. `task` is the bundle's task dict."""
    task: dict
    seed: int = 0
    scene: sc.Scene = field(init=False)
    pos: np.ndarray = field(init=False)
    vel: np.ndarray = field(init=False)

    def __post_init__(self):
        t = self.task
        self.rng = np.random.default_rng(self.seed)
        cfg = sc.SceneConfig(length=t["length"], half_width=tuple(t["half_width"]), ceiling=tuple(t["ceiling"]),
                             obstacles=tuple(t["obstacles"]), max_obstacles=t["max_obstacles"],
                             radius=tuple(t["radius"]), min_gap=t["min_gap"])
        self.scene = sc.sample_scene_np(self.rng, cfg)
        self.dt = 1.0 / t["rate_hz"]
        self.alpha = 1.0 - math.exp(-self.dt / t["velocity_tau"])
        self.pos = np.array([0.0, self.rng.uniform(-1, 1) * t["init_lateral"] * float(self.scene.half_width),
                             t["cruise_height"]])
        self.vel = np.zeros(2)
        self.collided = False

    @property
    def crossed(self) -> bool:
        return bool(self.pos[0] >= self.task["length"] and not self.collided)

    def clearance(self) -> float:
        return float(sc.clearance(np, self.scene, self.pos)) - self.task["vehicle_radius"]

    def step(self, action: np.ndarray) -> None:
        t = self.task
        a = np.clip(np.asarray(action, np.float64).reshape(-1)[:2], -1.0, 1.0)
        cmd = a * np.array([t["max_lateral_speed"], t["max_vertical_speed"]])
        self.pos, self.vel = sc.velocity_step(np, self.pos, self.vel, cmd, t["forward_speed"], self.alpha, self.dt)
        self.vel = self.vel + t["gust_std"] * math.sqrt(self.dt) * self.rng.standard_normal(2)
        self.collided = self.collided or self.clearance() <= 0.0


class SimCamera:
    """Renders the simulated vehicle's view with the bundle's camera noise (the training camera, in numpy)."""

    def __init__(self, sim: AvoidSim, spec: ImageSpec):
        self.sim, self.spec, self.cam = sim, spec, spec.camera()
        self.rays = self.cam.ray_grid()
        t = sim.task
        g = t["gain_range"] * (4.0 if spec.kind == "gray" else 1.0)
        self.gain = 1.0 + sim.rng.uniform(-g, g)
        self.bias = sim.rng.uniform(-0.05, 0.05)

    def read(self) -> np.ndarray:
        t, rng, shape = self.sim.task, self.sim.rng, (self.spec.height, self.spec.width)
        gauss, drop = rng.standard_normal(shape), rng.random(shape) < t["dropout"]
        if self.spec.kind == "depth":
            d = sc.render_depth(np, self.sim.scene, self.sim.pos, self.cam, self.rays)
            img = sc.depth_noise(np, d, self.gain, gauss, drop, self.cam, t["depth_noise_std"], t["depth_noise_quadratic"])
        else:
            g = sc.render_gray(np, self.sim.scene, self.sim.pos, self.cam, self.rays)
            img = sc.gray_noise(np, g, self.gain, self.bias, gauss, drop, t["gray_noise_std"])
        return np.asarray(img, np.float32)

    def close(self) -> None:
        pass


def build_observation(contract: dict, image: np.ndarray, velocity, height: float, prev_action) -> np.ndarray:
    """The raw observation in contract order from its named fields."""
    sl = observation_slices(contract)
    obs = np.zeros(contract["observation"]["size"], np.float32)
    im = contract["observation"]["image"]["field"]
    obs[sl[im]] = np.asarray(image, np.float32).reshape(-1)
    obs[sl["velocity"]] = velocity
    obs[sl["height"]] = height
    obs[sl["previous_action"]] = prev_action
    return obs


def fly_avoid(act, contract: dict, task: dict, seconds: float = 10.0, seed: int = 0, realtime: bool = True,
              camera: CameraSource | None = None, sim: AvoidSim | None = None, log=None):
    """Fly an avoid policy `act(obs (1, size)) -> (1, 2)` at the contract's rate through a simulated field,
    fed by a camera source (default: the simulated camera). Stops at a collision, on crossing the field or
    after `seconds`. Returns the FlightReport (edgectl.runtime.report): its outcome holds crossed, collided,
    collision_free_distance_m, field_length_m, min_clearance_m, final_position_m, obstacles, scene_seed,
    late_ms_max; its path the position after each tick. `log`: a FlightLog, a row per tick (the state after the
    tick's step, the clearance as robustness)."""
    from .protocol import State
    from .report import STOPPED, FlightReport

    spec = ImageSpec.from_contract(contract)
    sim = sim or AvoidSim(task, seed)
    camera = camera or SimCamera(sim, spec)
    noise = contract["observation"].get("noise_std")
    sl = observation_slices(contract)
    v_std = float(noise[sl["velocity"].start]) if noise else 0.0
    h_std = float(noise[sl["height"].start]) if noise else 0.0
    rate = float(contract["rate_hz"])
    period = 1.0 / rate
    rep = FlightReport(vehicle="avoid", rate_hz=rate)
    prev = np.zeros(2, np.float32)
    min_clear, late = math.inf, []
    t0 = time.perf_counter()
    while rep.ticks * period < seconds and not sim.collided and not sim.crossed:
        t, start = rep.ticks * period, time.perf_counter()
        img = camera.read()
        obs = build_observation(contract, img, sim.vel + v_std * sim.rng.standard_normal(2),
                                sim.pos[2] + h_std * sim.rng.standard_normal(), prev)
        a = np.asarray(act(obs[None]), np.float32).reshape(-1)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"policy returned a non-finite action {a}")
        sim.step(a)
        prev = np.clip(a, -1.0, 1.0)
        clear = sim.clearance()
        min_clear = min(min_clear, clear)
        if sim.collided:
            rep.events.append((round(t, 4), rep.final_mode, STOPPED, f"collision (clearance {clear:.3f} m)"))
            rep.final_mode = STOPPED
        rep.path.append([float(x) for x in sim.pos])
        compute_ms = 1e3 * (time.perf_counter() - start)
        late_ms = 1e3 * max(start - (t0 + t), 0.0) if realtime else None
        rep.tick("nominal", late_ms, compute_ms)
        if log is not None:
            state = State(0.0, sim.pos.copy(), np.array([1.0, 0.0, 0.0, 0.0]),
                          np.array([float(task["forward_speed"]), *sim.vel]), np.zeros(3))
            log.write(t, late_ms or 0.0, compute_ms, "nominal", rep.event_at(t), state, None, prev, clear)
        if realtime:
            due = t0 + rep.ticks * period
            late.append(max(time.perf_counter() - due, 0.0))
            time.sleep(max(due - time.perf_counter(), 0.0))
    camera.close()
    rep.outcome = {"crossed": sim.crossed, "collided": bool(sim.collided),
                   "collision_free_distance_m": float(min(sim.pos[0], task["length"])),
                   "field_length_m": float(task["length"]), "min_clearance_m": float(min_clear),
                   "final_position_m": [float(x) for x in sim.pos],
                   "obstacles": int(np.sum(np.asarray(sim.scene.obs_r) > 0)), "scene_seed": seed,
                   "late_ms_max": 1000.0 * max(late) if late else 0.0}
    return rep
