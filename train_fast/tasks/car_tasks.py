"""RC-car racing (FastRLAP-style): a demonstration lap defines the course, checkpoints are extracted
from it, and the car practices driving through them; hitting the track edge puts the car back on the
demonstration line a little before where it failed, and practice goes on toward the same checkpoint.

Track (edgectl/tracks.py, numpy; the runtime reads it too): a CSV demonstration lap (hardware/tracks/README.md) is resampled by arc
length, smoothed (the log has localization noise and 10 Hz corners), and resampled again at
`TRACK_SPACING`. The drivable corridor is every point within `half_width` of that line; the car
collides when a corner of its body footprint leaves the corridor.

Checkpoints: FastRLAP records a few goal points along the demonstration and counts one as reached
within a radius. Here they are spaced evenly in arc length along the demonstration lap, and a
checkpoint is a gate across the corridor, passed when the car's projection on the lap crosses it:
a radius smaller than the corridor lets a fast car slip past a goal, a larger one rewards cutting.

Environment (gymnax style, the interface of quadrotor_tasks so train_fast/algos/ppo.py trains it):
`reset(key, env)`, `step(key, state, action, env) -> (state, reward, terminated, truncated)`,
`observe(key, env, state)` (actor, raw units with sensor noise), `observe_privileged(env, state)`
(critic, normalized). A collision is not an episode end (practice continues), so `terminated` is
always false; episodes are truncated at `episode_seconds`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from edgectl.platforms import Platform
from train_fast.sims import car
# The track half lives in edgectl/tracks.py (numpy only, the runtime reads it too); re-exported here.
from edgectl.tracks import (TRACK_SPACING, Track, TrackError, extract_checkpoints, load_track,  # noqa: F401
                               parse_track, resolve_track)
from train_fast.pytree import pytree


# --- task configuration ------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskConfig:
    name: str = "race"
    track: str = "oval"  # shipped name or CSV path (the bundle keeps the CSV itself)
    episode_seconds: float = 10.0
    checkpoint_spacing: float = 2.5  # m of demonstration lap between checkpoints
    checkpoints_observed: int = 3  # the next K checkpoints are in the actor's observation
    scan_beams: int = 0  # coarse range scan to the corridor edge (0: none)
    scan_range: float = 4.0  # m
    # Start distribution: anywhere on the lap, near the line, rolling or standing.
    init_lateral: float = 0.5  # fraction of the free half width
    init_heading: float = 0.3  # rad
    init_speed_max: float = 3.0  # m/s
    reset_backoff: float = 0.5  # m: after a collision, restart this far back along the lap, standing
    # Reward: progress along the lap (per step, in units of top speed * dt), a FastRLAP-style bonus
    # per checkpoint, a penalty per collision (which also costs the restart from standstill).
    w_progress: float = 1.0
    checkpoint_bonus: float = 1.0
    collision_penalty: float = 20.0
    w_steer_rate: float = 0.05


def race_config(**kw) -> TaskConfig:
    return TaskConfig(**kw)


TASKS = {"race": race_config}


def obs_fields(cfg: TaskConfig) -> list[dict]:
    k = cfg.checkpoints_observed
    f = [
        dict(name="speed", size=1, unit="m/s", frame="body x", offset=2.5, scale=2.5,
             description="forward speed (wheel odometry / state estimate)"),
        dict(name="yaw_rate", size=1, unit="rad/s", frame="body z (up)", offset=0.0, scale=3.0,
             description="gyro yaw rate, counter-clockwise positive, radians per second"),
        dict(name="previous_action", size=2, unit="1", frame="[steer, throttle]", offset=0.0, scale=1.0,
             description="the last action sent, after clipping to [-1, 1]"),
        dict(name="next_checkpoints", size=2 * k, unit="m", frame="body (x forward, y left)", offset=0.0, scale=5.0,
             description=f"positions of the next {k} checkpoints (gates on the demonstration lap) relative to the car: x1, y1, x2, y2, ..."),
        dict(name="checkpoint_heading", size=2, unit="1", frame="body", offset=0.0, scale=1.0,
             description="cos, sin of the lap's direction at the next checkpoint relative to the car's heading"),
    ]
    if cfg.scan_beams > 0:
        f.append(dict(name="range_scan", size=cfg.scan_beams, unit="m", frame=f"body, {cfg.scan_beams} beams evenly from -90 to +90 deg",
                      offset=cfg.scan_range / 2, scale=cfg.scan_range / 2,
                      description=f"distance to the corridor edge along each beam, capped at {cfg.scan_range} m"))
    return f


def contract(cfg: TaskConfig, platform: Platform) -> dict:
    fs = obs_fields(cfg)
    g = platform.get
    noise_by_field = {"speed": g("sensors.speed_noise_std"), "yaw_rate": g("sensors.yaw_rate_noise_std"),
                      "next_checkpoints": g("sensors.position_noise_std"), "checkpoint_heading": g("sensors.heading_noise_std"),
                      "range_scan": g("sensors.position_noise_std")}
    offset, scale, noise = [], [], []
    for fd in fs:
        offset += [float(fd["offset"])] * fd["size"]
        scale += [float(fd["scale"])] * fd["size"]
        noise += [float(noise_by_field.get(fd["name"], 0.0))] * fd["size"]
    return {
        "version": 1,
        "rate_hz": float(g("control.policy_rate")),
        "quaternion_order": "wxyz",  # required by the contract schema; a car has no quaternion in its observation
        "frames": "world x, y on the ground, z up; body x forward, y left; yaw counter-clockwise from world x",
        "observation": {
            "size": sum(fd["size"] for fd in fs),
            "fields": [{k: fd[k] for k in ("name", "size", "unit", "frame", "description")} for fd in fs],
            "noise_std": noise,
            "normalization": {"offset": offset, "scale": scale, "formula": "x_norm = (x - offset) / scale"},
        },
        "action": {
            "size": 2,
            "names": ["steer", "throttle"],
            "low": -1.0,
            "high": 1.0,
            "mapping": {
                "kind": "rc_car",
                "formula": "steer_angle = clip(steer, -1, 1) * max_steer_angle (+ = left); throttle > 0: drive "
                           "force = throttle * max_force * (1 - speed / max_speed); throttle < 0: brake force = "
                           "-throttle * max_brake_force (no reverse)",
                "max_steer_angle_rad": g("steering.max_angle"),
                "max_force_n": g("drive.max_force"),
                "max_speed_m_s": g("drive.max_speed"),
                "max_brake_force_n": g("drive.max_brake_force"),
                "steer_time_constant_s": g("steering.time_constant"),
                "throttle_time_constant_s": g("drive.time_constant"),
            },
        },
        "track": {"checkpoint_spacing_m": cfg.checkpoint_spacing, "checkpoints_observed": cfg.checkpoints_observed,
                  "file": "track.csv"},
    }


# --- the environment ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CarEnv:
    cfg: TaskConfig
    track: Track = field(hash=False, compare=False)
    nominal: car.Params = field(hash=False, compare=False)
    ranges: np.ndarray = field(hash=False, compare=False)
    obs_offset: np.ndarray = field(default=None, hash=False, compare=False)
    obs_scale: np.ndarray = field(default=None, hash=False, compare=False)
    obs_noise: np.ndarray = field(default=None, hash=False, compare=False)
    checkpoints: np.ndarray = field(default=None, hash=False, compare=False)  # (M,) point indices
    car_length: float = 0.58
    car_width: float = 0.31
    randomize: bool = True

    @property
    def episode_steps(self) -> int:
        return int(round(self.cfg.episode_seconds / float(self.nominal.dt)))

    @property
    def obs_size(self) -> int:
        return int(len(self.obs_offset))

    @property
    def critic_size(self) -> int:
        return self.obs_size + 7 + len(LOOKAHEAD) + len(car.RANDOMIZED) + 3

    @property
    def free_half_width(self) -> float:
        """How far the car's centre may stray from the lap, driving straight along it."""
        return self.track.half_width - 0.5 * self.car_width


# Distances (m) along the lap at which the critic sees the curvature ahead.
LOOKAHEAD = (0.0, 0.5, 1.0, 2.0, 3.0, 4.5)


def make_env(cfg: TaskConfig, platform: Platform, track: Track | None = None, randomize: bool = True) -> CarEnv:
    if platform.kind != "rc_car":
        raise ValueError(f"{platform.path}: platform {platform.name!r} is a {platform.kind}, the race task needs an rc_car")
    track = track if track is not None else load_track(cfg.track)
    c = contract(cfg, platform)
    norm = c["observation"]["normalization"]
    env = CarEnv(cfg=cfg, track=track, nominal=car.nominal_params(platform),
                 ranges=car.randomization_ranges(platform) * (1.0 if randomize else 0.0),
                 obs_offset=np.asarray(norm["offset"], np.float32), obs_scale=np.asarray(norm["scale"], np.float32),
                 obs_noise=np.asarray(c["observation"]["noise_std"], np.float32),
                 checkpoints=extract_checkpoints(track, cfg.checkpoint_spacing),
                 car_length=platform.get("body.length"), car_width=platform.get("body.width"), randomize=randomize)
    if env.free_half_width < 0.1:
        raise TrackError(f"{track.path}: field half_width ({track.half_width} m) leaves no room for a car {env.car_width} m wide")
    return env


@pytree
@dataclass(frozen=True)
class EnvState:
    sim: car.State
    params: car.Params
    factors: jax.Array  # randomization factors, for the critic
    t: jax.Array  # step in the episode
    idx: jax.Array  # int32, nearest lap point
    prog: jax.Array  # m, unwrapped arc length of the car's projection on the lap
    cp: jax.Array  # int32, index of the next checkpoint
    cp_prog: jax.Array  # m, unwrapped arc length of the next checkpoint (passed when prog >= cp_prog)
    passed: jax.Array  # int32, checkpoints passed this episode
    collisions: jax.Array  # int32, collisions this episode
    prev_action: jax.Array  # (2,)


def _arrays(env: CarEnv):
    tr = env.track
    return (jnp.asarray(tr.points, jnp.float32), jnp.asarray(tr.heading, jnp.float32),
            jnp.asarray(tr.curvature, jnp.float32), jnp.asarray(env.checkpoints, jnp.int32))


def _next_checkpoint(env: CarEnv, idx, prog):
    """(cp, cp_prog) of the first checkpoint strictly ahead of lap point `idx` (at arc `prog`)."""
    cps = jnp.asarray(env.checkpoints, jnp.int32)
    m = len(env.checkpoints)
    k = jnp.searchsorted(cps, idx, side="right")
    cp = k % m
    gap = ((cps[cp] - idx) % env.track.n).astype(jnp.float32) * env.track.spacing
    gap = jnp.where(gap <= 0.0, env.track.length, gap)
    return cp.astype(jnp.int32), prog + gap


def place(env: CarEnv, idx, lateral, dheading, speed, params, factors, t=None, passed=None, collisions=None,
          prev_action=None) -> EnvState:
    """A car on lap point `idx`, `lateral` m left of the line, heading off by `dheading`, at `speed`."""
    pts, hd, _, _ = _arrays(env)
    idx = jnp.asarray(idx, jnp.int32) % env.track.n
    h = hd[idx]
    x = pts[idx, 0] - jnp.sin(h) * lateral
    y = pts[idx, 1] + jnp.cos(h) * lateral
    sim = car.initial_state(x, y, h + dheading, speed)
    prog = idx.astype(jnp.float32) * env.track.spacing
    cp, cp_prog = _next_checkpoint(env, idx, prog)
    zero = jnp.zeros((), jnp.int32)
    return EnvState(sim=sim, params=params, factors=factors, t=zero if t is None else t, idx=idx, prog=prog, cp=cp,
                    cp_prog=cp_prog, passed=zero if passed is None else passed,
                    collisions=zero if collisions is None else collisions,
                    prev_action=jnp.zeros(2) if prev_action is None else prev_action)


def reset(key, env: CarEnv) -> EnvState:
    cfg = env.cfg
    kp, ki, kl, kh, kv = jax.random.split(key, 5)
    params, factors = car.sample_params(kp, env.nominal, env.ranges)
    idx = jax.random.randint(ki, (), 0, env.track.n)
    lat = jax.random.uniform(kl, (), minval=-1.0, maxval=1.0) * cfg.init_lateral * env.free_half_width
    dh = jax.random.uniform(kh, (), minval=-cfg.init_heading, maxval=cfg.init_heading)
    v = jax.random.uniform(kv, (), minval=0.0, maxval=cfg.init_speed_max)
    return place(env, idx, lat, dh, v, params, factors)


def start_line(env: CarEnv, params=None) -> EnvState:
    """Standing on the start/finish line (the first point of the demonstration lap), nominal car."""
    p = env.nominal if params is None else params
    return place(env, 0, 0.0, 0.0, 0.0, p, jnp.ones(len(car.RANDOMIZED)))


def _project(env: CarEnv, idx, x, y):
    """Nearest lap point in a window around `idx`; returns (idx, along, lateral) in m."""
    pts, hd, _, _ = _arrays(env)
    n = env.track.n
    cand = (idx + jnp.arange(-4, 9)) % n
    d2 = (pts[cand, 0] - x) ** 2 + (pts[cand, 1] - y) ** 2
    j = cand[jnp.argmin(d2)]
    c, s = jnp.cos(hd[j]), jnp.sin(hd[j])
    dx, dy = x - pts[j, 0], y - pts[j, 1]
    return j, dx * c + dy * s, -dx * s + dy * c


def _wrap(a):
    return jnp.arctan2(jnp.sin(a), jnp.cos(a))


def _footprint_excess(env: CarEnv, lateral, dheading):
    """How far (m) the farthest corner of the car is outside the corridor (> 0: collision)."""
    half_l, half_w = 0.5 * env.car_length, 0.5 * env.car_width
    reach = jnp.abs(lateral) + half_l * jnp.abs(jnp.sin(dheading)) + half_w * jnp.abs(jnp.cos(dheading))
    return reach - env.track.half_width


def step(key, s: EnvState, action, env: CarEnv):
    """One control period. Returns (state, reward, terminated, truncated)."""
    del key
    cfg, tr = env.cfg, env.track
    action = jnp.clip(action, -1.0, 1.0)
    sim = car.dynamics_step(s.sim, action, s.params)
    idx, along, lat = _project(env, s.idx, sim.x, sim.y)
    _, along0, _ = _project(env, s.idx, s.sim.x, s.sim.y)  # the previous position against the same point
    di = (idx - s.idx + tr.n // 2) % tr.n - tr.n // 2
    # s.prog = arc(s.idx) + along0, so the new projection is s.prog - along0 + (index steps) + along.
    prog = s.prog + di.astype(jnp.float32) * tr.spacing + along - along0
    _, hd, _, cps = _arrays(env)
    dh = _wrap(sim.yaw - hd[idx])
    finite = jnp.isfinite(sim.x) & jnp.isfinite(sim.y) & jnp.isfinite(sim.vx) & jnp.isfinite(sim.yaw_rate)
    hit = (_footprint_excess(env, lat, dh) > 0.0) | ~finite
    # Checkpoints: at most one per step (they are metres apart, a step is centimetres).
    through = prog >= s.cp_prog
    m = len(env.checkpoints)
    cp_next = (s.cp + 1) % m
    gap = ((cps[cp_next] - cps[s.cp]) % tr.n).astype(jnp.float32) * tr.spacing
    gap = jnp.where(gap <= 0.0, tr.length, gap)
    cp = jnp.where(through, cp_next, s.cp)
    cp_prog = jnp.where(through, s.cp_prog + gap, s.cp_prog)
    passed = s.passed + through.astype(jnp.int32)
    steer_rate = action[0] - s.prev_action[0]
    top = env.nominal.max_speed * env.nominal.dt
    reward = (cfg.w_progress * (prog - s.prog) / top + cfg.checkpoint_bonus * through
              - cfg.w_steer_rate * steer_rate ** 2)
    reward = jnp.where(hit, -cfg.collision_penalty, reward)
    moved = EnvState(sim=sim, params=s.params, factors=s.factors, t=s.t + 1, idx=idx, prog=prog, cp=cp,
                     cp_prog=cp_prog, passed=passed, collisions=s.collisions, prev_action=action)
    # Reset near the failure: standing on the lap a little before the projection of where it hit,
    # still heading for the same checkpoint, as FastRLAP's car backs up and carries on practicing.
    back = jnp.round(cfg.reset_backoff / tr.spacing).astype(jnp.int32)
    ridx = (jnp.where(finite, idx, s.idx) - back) % tr.n
    r = place(env, ridx, 0.0, 0.0, 0.0, s.params, s.factors, t=s.t + 1, passed=s.passed,
              collisions=s.collisions + 1, prev_action=jnp.zeros(2))
    r_prog = jnp.where(finite, prog - along, s.prog) - back.astype(jnp.float32) * tr.spacing
    r = EnvState(sim=r.sim, params=r.params, factors=r.factors, t=r.t, idx=r.idx, prog=r_prog, cp=s.cp,
                 cp_prog=s.cp_prog, passed=r.passed, collisions=r.collisions, prev_action=r.prev_action)
    s2 = jax.tree_util.tree_map(lambda a, b: jnp.where(hit, b, a), moved, r)
    truncated = s2.t >= env.episode_steps
    return s2, reward, jnp.zeros((), bool), truncated


# --- observations ------------------------------------------------------------------------------
def _checkpoint_fields(env: CarEnv, s: EnvState):
    pts, hd, _, cps = _arrays(env)
    m = len(env.checkpoints)
    ks = (s.cp + jnp.arange(env.cfg.checkpoints_observed)) % m
    c, sn = jnp.cos(s.sim.yaw), jnp.sin(s.sim.yaw)
    dx, dy = pts[cps[ks], 0] - s.sim.x, pts[cps[ks], 1] - s.sim.y
    rel = jnp.stack([dx * c + dy * sn, -dx * sn + dy * c], axis=-1).reshape(-1)
    dh = hd[cps[s.cp]] - s.sim.yaw
    return rel, jnp.stack([jnp.cos(dh), jnp.sin(dh)])


def range_scan(env: CarEnv, s: EnvState):
    """Distance to the corridor edge along `scan_beams` beams, by marching samples along each beam
    and testing them against the lap points near the car (coarse: a 0.25 m step)."""
    cfg = env.cfg
    pts = _arrays(env)[0]
    n = env.track.n
    angles = jnp.linspace(-math.pi / 2, math.pi / 2, cfg.scan_beams)
    ts = jnp.arange(0.25, cfg.scan_range + 1e-6, 0.25)
    span = int(math.ceil(cfg.scan_range / env.track.spacing))
    near = (s.idx + jnp.arange(-span, span + 1, 2)) % n
    bx = s.sim.x + jnp.cos(s.sim.yaw + angles)[:, None] * ts[None, :]
    by = s.sim.y + jnp.sin(s.sim.yaw + angles)[:, None] * ts[None, :]
    d2 = (bx[..., None] - pts[near, 0]) ** 2 + (by[..., None] - pts[near, 1]) ** 2
    outside = jnp.min(d2, axis=-1) > env.track.half_width ** 2
    first = jnp.argmax(outside, axis=-1)
    return jnp.where(jnp.any(outside, axis=-1), ts[first], cfg.scan_range)


def _fields(env: CarEnv, s: EnvState) -> jax.Array:
    rel, head = _checkpoint_fields(env, s)
    parts = [s.sim.vx[None], s.sim.yaw_rate[None], s.prev_action, rel, head]
    if env.cfg.scan_beams > 0:
        parts.append(range_scan(env, s))
    return jnp.concatenate(parts)


def observe(key, env: CarEnv, s: EnvState) -> jax.Array:
    """The actor's raw (unnormalized) observation, with sensor noise: what the car can know."""
    raw = _fields(env, s)
    return raw + env.obs_noise * jax.random.normal(key, raw.shape)


def observe_privileged(env: CarEnv, s: EnvState) -> jax.Array:
    """The critic's normalized input: noise-free observation, side slip, actuators, pose on the
    lap, curvature ahead, randomized parameters, lap phase and episode time."""
    obs = (_fields(env, s) - env.obs_offset) / env.obs_scale
    pts, hd, kappa, _ = _arrays(env)
    _, _, lat = _project(env, s.idx, s.sim.x, s.sim.y)
    dh = _wrap(s.sim.yaw - hd[s.idx])
    ahead = (s.idx + jnp.round(jnp.asarray(LOOKAHEAD) / env.track.spacing).astype(jnp.int32)) % env.track.n
    phase = 2 * math.pi * s.idx.astype(jnp.float32) / env.track.n
    factors = (s.factors - 1.0) / jnp.maximum(jnp.asarray(env.ranges), 1e-6)
    extra = jnp.stack([s.sim.vy, s.sim.steer / env.nominal.max_steer, s.sim.throttle,
                       lat / env.free_half_width, jnp.sin(dh), jnp.cos(dh), (s.cp_prog - s.prog) / env.cfg.checkpoint_spacing])
    return jnp.concatenate([obs, extra, kappa[ahead], factors,
                            jnp.stack([jnp.sin(phase), jnp.cos(phase), s.t / env.episode_steps])])
