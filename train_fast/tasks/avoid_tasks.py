"""Vision quadrotor task `avoid` (CAD2RL-style): fly forward through a random obstacle field without
touching anything, from a low-resolution camera image plus proprioception.

Dynamics (an honest simplification, stated in the bundle contract): CAD2RL commands a flight direction
and the vehicle flies at constant forward speed. Here the vehicle holds its heading (+x, the camera's
axis) and flies at a constant forward speed (per-episode randomized); the policy commands a lateral and
a vertical velocity at `rate_hz`, which the vehicle tracks with a first-order lag of time constant tau
(per-episode randomized around the Crazyflie's velocity loop, ~0.2 s) plus gusts. So the actor's action
is a velocity setpoint for the stock flight controller (the Crazyflie's position/velocity PID, or PX4
offboard velocity), not motor commands. The attitude needed to accelerate sideways is not modelled
(the camera is taken as level).

Collision: the vehicle sphere (`vehicle_radius`: Crazyflie 2.1 rotor at 0.04 m from the centre plus a
0.023 m propeller = 0.063 m, with margin 0.1 m) touches an obstacle, a wall, the floor or the ceiling.
Success: reaching x >= field length without a collision. Both end the episode.

Actor (what the vehicle can measure): the depth image (default; `image="gray"` gives the textured,
lit, randomized intensity image instead), the lateral and vertical velocity (optical flow deck), the
height above the floor (ToF) and its previous action. Critic (privileged): the nearest obstacles
ahead (relative position, radius), the corridor geometry, the true state and the randomized dynamics.

Actor network (decided by measurement): an MLP (tanh, 64 x 64) on the 16 x 12 image plus the 5
proprioceptive values, i.e. the bundle's plain `mlp` layout, so every exporter (ONNX, TFLite, C float and
int8, STM32 under QEMU) and the numpy runtime take it unchanged. It crossed 96-98 % of unseen fields within
a 90 s budget (bench/train_avoid.py), so a CNN was not needed; as float32 C it takes 70 KB of flash, 1.4 KB
of RAM and 109k instructions per inference on the Crazyflie's Cortex-M4 (budget 128 KB / 16 KB), and int8
about a quarter of the flash. 32 x 32 hidden units reached 93.8 % against 96.5 % at the same 655k steps.

Image (decided by measurement): depth is the default. The gray image (textured, lit, CAD2RL-randomized
appearance; `image="gray"`) costs about twice the render time (13k against 26k renders/s at 1024
scenes) and learns slower with this MLP actor: in a 300 s budget (1.25 M steps) it crossed 71.5 % of the
training-time evaluation fields, where depth crosses 96-98 % within 90 s. It stays a task option (a CNN actor
is the next step for it); the appearance randomization is what makes it meaningful, and the eval plot shows it.

gymnax style like quadrotor_tasks: reset(key, env), step(key, state, action, env), observe(key, env,
state), observe_privileged(env, state); `vmap` over keys gives thousands of different scenes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from edgectl import scene as sc
from edgectl.platforms import Platform
from train_fast.sims import camera as cam
from train_fast.pytree import pytree


@dataclass(frozen=True)
class TaskConfig:
    name: str = "avoid"
    rate_hz: float = 20.0  # decisions per second (CAD2RL-like; the camera runs at this rate)
    forward_speed: float = 1.5  # m/s
    forward_speed_range: float = 0.1  # +- fraction, per episode
    max_lateral_speed: float = 1.5  # m/s at action +-1
    max_vertical_speed: float = 0.5  # m/s at action +-1
    velocity_tau: float = 0.2  # s, first-order velocity tracking of the inner loop
    tau_range: float = 0.3  # +- fraction, per episode
    gust_std: float = 0.1  # m/s per sqrt(s): random walk added to the lateral/vertical velocity
    vehicle_radius: float = 0.1  # m
    cruise_height: float = 1.0  # m, start height and height reference
    init_height: float = 0.2  # m, +- around cruise_height
    init_lateral: float = 0.5  # fraction of the half width, +-
    # scene (edgectl.scene.SceneConfig)
    length: float = 10.0
    half_width: tuple = (1.5, 2.5)
    ceiling: tuple = (2.0, 3.0)
    obstacles: tuple = (6, 12)
    max_obstacles: int = 12
    radius: tuple = (0.1, 0.35)
    min_gap: float = 0.5
    # camera (edgectl.scene.CameraSpec) and its noise
    image: str = "depth"  # depth | gray
    width: int = 16
    height: int = 12
    supersample: int = 2
    hfov_deg: float = 100.0
    max_range: float = 6.0
    depth_noise_std: float = 0.03  # m
    depth_noise_quadratic: float = 0.01  # 1/m: std grows by this x depth^2
    dropout: float = 0.02  # fraction of pixels with no return (depth: max_range) / dead (gray: 0)
    gain_range: float = 0.05  # +- per-episode depth scale error (gray: 4x this exposure gain)
    gray_noise_std: float = 0.02
    velocity_noise_std: float = 0.05  # m/s
    height_noise_std: float = 0.02  # m
    # reward
    w_progress: float = 1.0  # per metre flown
    collision_penalty: float = 10.0
    success_bonus: float = 5.0
    w_action: float = 0.02
    w_height: float = 0.5  # per m^2 per step
    w_clearance: float = 0.5  # per step, times max(0, clearance_margin - clearance) / clearance_margin
    clearance_margin: float = 0.3  # m beyond the vehicle radius
    critic_obstacles: int = 5

    @property
    def dt(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def episode_steps(self) -> int:
        v_min = self.forward_speed * (1.0 - self.forward_speed_range)
        return int(math.ceil(self.length / (v_min * self.dt))) + 5

    def scene(self) -> sc.SceneConfig:
        return sc.SceneConfig(length=self.length, half_width=tuple(self.half_width), ceiling=tuple(self.ceiling),
                              obstacles=tuple(self.obstacles), max_obstacles=self.max_obstacles,
                              radius=tuple(self.radius), min_gap=self.min_gap)

    def camera(self) -> sc.CameraSpec:
        return sc.CameraSpec(width=self.width, height=self.height, supersample=self.supersample,
                             hfov_deg=self.hfov_deg, max_range=self.max_range)


def avoid_config(**kw) -> TaskConfig:
    for k in ("half_width", "ceiling", "obstacles", "radius"):  # from a bundle's JSON: lists
        if k in kw:
            kw[k] = tuple(kw[k])
    return TaskConfig(**kw)


TASKS = {"avoid": avoid_config}
ACTION_NAMES = ["lateral_velocity", "vertical_velocity"]


# --- the observation contract ------------------------------------------------------------------
def obs_fields(cfg: TaskConfig) -> list[dict]:
    spec = cfg.camera()
    img = (dict(name="depth_image", size=spec.size, unit="m", frame="camera",
                description=(f"{cfg.height} x {cfg.width} depth along the optical axis (body +x), row-major, row 0 top, "
                             f"column 0 left; horizontal FOV {cfg.hfov_deg:g} deg, square pixels; each pixel the MINIMUM "
                             f"over its {cfg.supersample} x {cfg.supersample} block of the sensor image; clipped to "
                             f"[{spec.min_range:g}, {spec.max_range:g}] m; no return reads {spec.max_range:g}"),
                offset=spec.max_range / 2, scale=spec.max_range / 2, noise=cfg.depth_noise_std)
           if cfg.image == "depth" else
           dict(name="gray_image", size=spec.size, unit="1", frame="camera",
                description=(f"{cfg.height} x {cfg.width} intensity in [0, 1] (luminance 0.299 R + 0.587 G + 0.114 B), "
                             f"row-major, row 0 top, column 0 left; horizontal FOV {cfg.hfov_deg:g} deg; each pixel the "
                             f"mean over its {cfg.supersample} x {cfg.supersample} block of the sensor image"),
                offset=0.5, scale=0.25, noise=cfg.gray_noise_std))
    return [
        img,
        dict(name="velocity", size=2, unit="m/s", frame="world (= body, heading held)",
             description="lateral (y, + left) and vertical (z, + up) velocity", offset=0.0, scale=1.0,
             noise=cfg.velocity_noise_std),
        dict(name="height", size=1, unit="m", frame="world", description="height above the floor",
             offset=cfg.cruise_height, scale=0.5, noise=cfg.height_noise_std),
        dict(name="previous_action", size=2, unit="1", frame="action",
             description="the last action sent, after clipping to [-1, 1]", offset=0.0, scale=1.0, noise=0.0),
    ]


def contract(cfg: TaskConfig, platform: Platform) -> dict:
    fs = obs_fields(cfg)
    offset, scale, noise = [], [], []
    for fd in fs:
        offset += [float(fd["offset"])] * fd["size"]
        scale += [float(fd["scale"])] * fd["size"]
        noise += [float(fd["noise"])] * fd["size"]
    return {
        "version": 1,
        "rate_hz": float(cfg.rate_hz),
        "quaternion_order": "wxyz",
        "frames": "world z up, x along the corridor; body x forward, y left, z up; heading held at +x",
        "observation": {
            "size": sum(fd["size"] for fd in fs),
            "fields": [{k: fd[k] for k in ("name", "size", "unit", "frame", "description")} for fd in fs],
            "noise_std": noise,
            "normalization": {"offset": offset, "scale": scale, "formula": "x_norm = (x - offset) / scale"},
            "image": {"field": fs[0]["name"], "height": cfg.height, "width": cfg.width, "channels": 1,
                      "kind": cfg.image, "hfov_deg": cfg.hfov_deg, "supersample": cfg.supersample,
                      "pool": "min" if cfg.image == "depth" else "mean",
                      "min_range_m": cfg.camera().min_range, "max_range_m": cfg.max_range},
        },
        "action": {
            "size": 2,
            "names": ACTION_NAMES,
            "low": -1.0,
            "high": 1.0,
            "mapping": {
                "kind": "velocity_setpoint",
                "formula": (f"vy_cmd = {cfg.max_lateral_speed:g} m/s * a[0] (+ left), vz_cmd = {cfg.max_vertical_speed:g} m/s "
                            f"* a[1] (+ up), at constant forward speed vx = {cfg.forward_speed:g} m/s and constant heading; "
                            f"the flight controller tracks the setpoint (first-order, tau ~ {cfg.velocity_tau:g} s)"),
                "max_lateral_speed": cfg.max_lateral_speed,
                "max_vertical_speed": cfg.max_vertical_speed,
                "forward_speed": cfg.forward_speed,
                "velocity_tau": cfg.velocity_tau,
            },
        },
    }


# --- the environment ---------------------------------------------------------------------------
@dataclass(frozen=True)
class AvoidEnv:
    cfg: TaskConfig
    obs_offset: np.ndarray = field(default=None, hash=False, compare=False)
    obs_scale: np.ndarray = field(default=None, hash=False, compare=False)

    @property
    def episode_steps(self) -> int:
        return self.cfg.episode_steps

    @property
    def obs_size(self) -> int:
        return int(len(self.obs_offset))

    @property
    def critic_size(self) -> int:
        return 12 + 4 * self.cfg.critic_obstacles


def make_env(cfg: TaskConfig, platform: Platform | None = None) -> AvoidEnv:
    c = contract(cfg, platform)
    norm = c["observation"]["normalization"]
    return AvoidEnv(cfg=cfg, obs_offset=np.asarray(norm["offset"], np.float32), obs_scale=np.asarray(norm["scale"], np.float32))


@pytree
@dataclass(frozen=True)
class EnvState:
    pos: jax.Array  # (3,) m
    vel: jax.Array  # (2,) m/s lateral, vertical
    scene: sc.Scene
    forward_speed: jax.Array  # m/s
    alpha: jax.Array  # 1 - exp(-dt / tau)
    gain: jax.Array  # camera gain for the episode
    bias: jax.Array  # gray: exposure offset
    t: jax.Array
    prev_action: jax.Array  # (2,)


def reset(key, env: AvoidEnv) -> EnvState:
    cfg = env.cfg
    ks, kv, ka, ky, kz, kg, kb = jax.random.split(key, 7)
    scene = cam.sample_scene(ks, cfg.scene())
    u = lambda k, r: jax.random.uniform(k, (), minval=-r, maxval=r)  # noqa: E731
    tau = cfg.velocity_tau * (1.0 + u(ka, cfg.tau_range))
    g = cfg.gain_range * (4.0 if cfg.image == "gray" else 1.0)
    return EnvState(
        pos=jnp.stack([jnp.zeros(()), u(ky, cfg.init_lateral) * scene.half_width, cfg.cruise_height + u(kz, cfg.init_height)]),
        vel=jnp.zeros(2), scene=scene,
        forward_speed=cfg.forward_speed * (1.0 + u(kv, cfg.forward_speed_range)),
        alpha=1.0 - jnp.exp(-cfg.dt / tau), gain=1.0 + u(kg, g), bias=u(kb, 0.05),
        t=jnp.zeros((), jnp.int32), prev_action=jnp.zeros(2))


def image(key, env: AvoidEnv, s: EnvState):
    """The camera image the actor sees, with noise: (height, width)."""
    cfg, spec = env.cfg, env.cfg.camera()
    kn, kd = jax.random.split(key)
    gauss = jax.random.normal(kn, (cfg.height, cfg.width))
    drop = jax.random.bernoulli(kd, cfg.dropout, (cfg.height, cfg.width))
    if cfg.image == "depth":
        d = cam.render_depth(s.scene, s.pos, spec)
        return sc.depth_noise(jnp, d, s.gain, gauss, drop, spec, cfg.depth_noise_std, cfg.depth_noise_quadratic)
    g = cam.render_gray(s.scene, s.pos, spec)
    return sc.gray_noise(jnp, g, s.gain, s.bias, gauss, drop, cfg.gray_noise_std)


def observe(key, env: AvoidEnv, s: EnvState) -> jax.Array:
    """The actor's raw observation (contract order, units), with camera and sensor noise."""
    cfg = env.cfg
    ki, kp = jax.random.split(key)
    n = jax.random.normal(kp, (3,))
    img = image(ki, env, s).reshape(-1)
    vel = s.vel + cfg.velocity_noise_std * n[:2]
    h = s.pos[2] + cfg.height_noise_std * n[2]
    return jnp.concatenate([img, vel, h[None], s.prev_action])


def nearest_obstacles(env: AvoidEnv, s: EnvState):
    """(critic_obstacles, 4): dx, dy, radius, present for the nearest obstacles not yet passed, by distance."""
    K = env.cfg.critic_obstacles
    dx = s.scene.obs_xy[:, 0] - s.pos[0]
    dy = s.scene.obs_xy[:, 1] - s.pos[1]
    r = s.scene.obs_r
    ahead = (r > 0) & (dx > -(r + env.cfg.vehicle_radius + 0.2))
    dist = jnp.where(ahead, jnp.hypot(dx, dy) - r, sc.NO_HIT)
    _, idx = jax.lax.top_k(-dist, K)
    present = ahead[idx]
    return jnp.stack([jnp.where(present, dx[idx], 8.0), jnp.where(present, dy[idx], 0.0),
                      jnp.where(present, r[idx], 0.0), present.astype(jnp.float32)], axis=1)


def observe_privileged(env: AvoidEnv, s: EnvState) -> jax.Array:
    cfg = env.cfg
    obst = nearest_obstacles(env, s) / jnp.array([4.0, 2.0, 0.3, 1.0])
    tau = -cfg.dt / jnp.log(1.0 - s.alpha)
    state = jnp.stack([
        s.pos[0] / cfg.length, s.pos[1] / s.scene.half_width, (s.pos[2] - cfg.cruise_height) / 0.5,
        s.vel[0], s.vel[1], s.scene.half_width - 2.0, s.scene.ceiling - s.pos[2] - 1.5,
        (s.forward_speed / cfg.forward_speed - 1.0) / max(cfg.forward_speed_range, 1e-3),
        (tau / cfg.velocity_tau - 1.0) / max(cfg.tau_range, 1e-3), s.t / cfg.episode_steps])
    return jnp.concatenate([state, s.prev_action, obst.reshape(-1)])


def step(key, s: EnvState, action, env: AvoidEnv):
    """One decision period. Returns (state, reward, terminated, truncated)."""
    cfg = env.cfg
    a = jnp.clip(action, -1.0, 1.0)
    cmd = a * jnp.array([cfg.max_lateral_speed, cfg.max_vertical_speed])
    pos, vel = sc.velocity_step(jnp, s.pos, s.vel, cmd, s.forward_speed, s.alpha, cfg.dt)
    vel = vel + cfg.gust_std * math.sqrt(cfg.dt) * jax.random.normal(key, (2,))
    s2 = EnvState(pos=pos, vel=vel, scene=s.scene, forward_speed=s.forward_speed, alpha=s.alpha, gain=s.gain,
                  bias=s.bias, t=s.t + 1, prev_action=a)
    clear = cam.clearance(s.scene, pos) - cfg.vehicle_radius
    hit = clear <= 0.0
    done = pos[0] >= cfg.length
    success = done & ~hit
    near = jnp.maximum(cfg.clearance_margin - clear, 0.0) / cfg.clearance_margin
    reward = (cfg.w_progress * (pos[0] - s.pos[0]) - cfg.w_action * jnp.sum(a * a)
              - cfg.w_height * (pos[2] - cfg.cruise_height) ** 2 - cfg.w_clearance * near
              - cfg.collision_penalty * hit + cfg.success_bonus * success)
    terminated = hit | done
    truncated = s2.t >= cfg.episode_steps
    return s2, reward, terminated, truncated
