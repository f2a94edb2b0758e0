"""Obstacle fields, the vehicle that flies through them, and the low-resolution camera that sees them.

Written once over an array module `xp` (numpy or jax.numpy): the JAX trainer
(train_fast/sims/camera.py, batched with vmap) and the runtime's simulated camera
(edgectl/runtime/camera.py, numpy only, no JAX) render the same pixels and detect the same collisions.
Module level imports numpy only: this file runs on the robot side.

World (the quadrotor convention): x forward along the corridor, y left, z up. A scene is
- a corridor: walls at y = +-half_width, floor z = 0, ceiling z = ceiling, open at both ends;
- up to K vertical cylinders from floor to ceiling (centre (x, y), radius r; r = 0 marks an empty slot,
  parked far away);
- its appearance (CAD2RL-style domain randomization): per surface class (floor, ceiling, left wall,
  right wall, obstacles) a base and an alternate colour and a procedural texture (stripes or checker,
  random frequency, direction and phase), a per-obstacle colour tint, and the light (direction,
  intensity, ambient). Appearance never changes geometry: depth does not depend on it.

Camera: a pinhole at the vehicle's centre looking along +x (the heading is held constant: see
train_fast/tasks/avoid_tasks.py), rendered by analytic ray intersection at (height * ss, width * ss) rays
and pooled over ss x ss blocks to (height, width): depth by the MINIMUM (a thin obstacle between two
coarse pixels still shows, and nearer is the safe side), gray by the mean (a camera pixel integrates
light). Ray (row i, column j) has direction (1, dy, dz) with dy > 0 on the left (column 0) and dz > 0 at
the top (row 0), so the ray parameter t is the depth along the optical axis, which is what the
`depth` image holds (metres, clipped to [min_range, max_range]; no return reads max_range).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

FAR = 1.0e3  # m: where empty obstacle slots are parked
NO_HIT = 1.0e6
SURFACES = ("floor", "ceiling", "left_wall", "right_wall", "obstacle")


@dataclass(frozen=True)
class CameraSpec:
    width: int = 16  # pixels the policy sees
    height: int = 12
    supersample: int = 2  # rays per pixel along each axis (rendered at 32 x 24, pooled to 16 x 12)
    hfov_deg: float = 100.0  # horizontal field of view; vertical from the aspect ratio (square pixels)
    min_range: float = 0.05  # m
    max_range: float = 6.0  # m

    @property
    def size(self) -> int:
        return self.width * self.height

    def ray_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(dy, dz) of the rendered rays, each (height * ss, width * ss), float32; dx = 1."""
        w, h = self.width * self.supersample, self.height * self.supersample
        tx = math.tan(math.radians(self.hfov_deg) / 2.0)
        tz = tx * h / w
        dy = tx * (1.0 - 2.0 * (np.arange(w) + 0.5) / w)  # + = left, column 0 leftmost
        dz = tz * (1.0 - 2.0 * (np.arange(h) + 0.5) / h)  # + = up, row 0 topmost
        return (np.broadcast_to(dy[None, :], (h, w)).astype(np.float32),
                np.broadcast_to(dz[:, None], (h, w)).astype(np.float32))


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn (the trainer's jax.random sampler and the runtime's numpy one share it)."""
    length: float = 10.0  # m: the field is crossed when x >= length (start at x = 0)
    half_width: tuple = (1.5, 2.5)  # m, corridor half width, uniform
    ceiling: tuple = (2.0, 3.0)  # m, uniform
    obstacles: tuple = (6, 12)  # count, uniform integer, inclusive; at most max_obstacles
    max_obstacles: int = 12
    radius: tuple = (0.1, 0.35)  # m, uniform
    x_start: float = 1.5  # m: obstacles from here to length - 0.3
    # Free space between any two obstacles and between an obstacle and a wall: at least this (> the
    # vehicle's diameter plus margin), so every field can be crossed (rejection sampling; a slot whose
    # candidates all fail stays empty).
    min_gap: float = 0.5
    candidates: int = 8  # rejection-sampling tries per obstacle slot


@dataclass(frozen=True)
class Scene:
    """One obstacle field and its appearance. Leaves are arrays (numpy or JAX); the trainer registers
    the class as a JAX pytree, so a batch of scenes is a Scene of stacked arrays."""
    obs_xy: object  # (K, 2) m
    obs_r: object  # (K,) m, 0 = empty slot
    half_width: object  # () m
    ceiling: object  # () m
    colors: object  # (5, 2, 3) surface class x (base, alternate) x rgb in [0, 1]
    tint: object  # (K, 3) per-obstacle multiplier of the obstacle colours
    texture: object  # (5, 4): kind (0 stripes, 1 checker), frequency u, frequency v (rad/m), phase (rad)
    light: object  # (5,): unit direction toward the light (3), intensity, ambient

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


# --- the vehicle ------------------------------------------------------------------------------------
def velocity_step(xp, pos, vel, cmd, forward_speed, alpha, dt):
    """First-order tracking of the lateral/vertical velocity command at constant forward speed.

    vel, cmd: (2,) = (vy, vz) m/s; alpha = 1 - exp(-dt / tau) (exact for a command held over dt); the
    position integrates the trapezoid of the velocity. Returns (pos', vel')."""
    vel2 = vel + alpha * (cmd - vel)
    mid = 0.5 * (vel + vel2)
    pos2 = xp.stack([pos[0] + forward_speed * dt, pos[1] + mid[0] * dt, pos[2] + mid[1] * dt])
    return pos2, vel2


def clearance(xp, scene: Scene, pos):
    """Distance (m) from the vehicle centre to the nearest surface: obstacles, walls, floor, ceiling."""
    d_obs = xp.sqrt((pos[0] - scene.obs_xy[:, 0]) ** 2 + (pos[1] - scene.obs_xy[:, 1]) ** 2) - scene.obs_r
    d_obs = xp.where(scene.obs_r > 0, d_obs, FAR)
    d_walls = xp.minimum(scene.half_width - xp.abs(pos[1]), xp.minimum(pos[2], scene.ceiling - pos[2]))
    return xp.minimum(xp.min(d_obs), d_walls)


def collided(xp, scene: Scene, pos, radius):
    """The vehicle sphere (radius m) touches an obstacle, a wall, the floor or the ceiling."""
    return clearance(xp, scene, pos) <= radius


# --- the camera -------------------------------------------------------------------------------------
def _hits(xp, scene: Scene, pos, dy, dz):
    """Per ray (flat arrays dy, dz): depth t, surface index (0..4), obstacle index."""
    big = NO_HIT
    px, py, pz = pos[0], pos[1], pos[2]
    t_floor = xp.where(dz < 0, -pz / xp.minimum(dz, -1e-9), big)
    t_ceil = xp.where(dz > 0, (scene.ceiling - pz) / xp.maximum(dz, 1e-9), big)
    t_left = xp.where(dy > 0, (scene.half_width - py) / xp.maximum(dy, 1e-9), big)
    t_right = xp.where(dy < 0, (-scene.half_width - py) / xp.minimum(dy, -1e-9), big)
    # Vertical cylinders: the ray's xy projection against circles. Rays (R,) x obstacles (K,).
    ox = px - scene.obs_xy[:, 0]
    oy = py - scene.obs_xy[:, 1]
    r = scene.obs_r
    a = 1.0 + dy * dy
    b = 2.0 * (ox[None, :] + oy[None, :] * dy[:, None])
    c = ox * ox + oy * oy - r * r
    disc = b * b - 4.0 * a[:, None] * c[None, :]
    t = (-b - xp.sqrt(xp.maximum(disc, 0.0))) / (2.0 * a[:, None])
    t_cyl = xp.where((disc > 0) & (t > 0) & (r[None, :] > 0), t, big)
    k = xp.argmin(t_cyl, axis=1)
    t_obs = xp.min(t_cyl, axis=1)
    ts = xp.stack([t_floor, t_ceil, t_left, t_right, t_obs], axis=1)
    return xp.min(ts, axis=1), xp.argmin(ts, axis=1), k


def _pool(xp, img, spec: CameraSpec, how: str):
    ss = spec.supersample
    if ss == 1:
        return img
    blocks = img.reshape(spec.height, ss, spec.width, ss)
    return xp.min(blocks, axis=(1, 3)) if how == "min" else xp.mean(blocks, axis=(1, 3))


def render_depth(xp, scene: Scene, pos, spec: CameraSpec, rays=None):
    """(height, width) depth in metres along the optical axis, clipped to [min_range, max_range]."""
    dy, dz = rays if rays is not None else spec.ray_grid()
    t, _, _ = _hits(xp, scene, pos, xp.asarray(dy).reshape(-1), xp.asarray(dz).reshape(-1))
    t = xp.clip(t, spec.min_range, spec.max_range)
    return _pool(xp, t.reshape(dy.shape), spec, "min")


def render_rgb(xp, scene: Scene, pos, spec: CameraSpec, rays=None, pool: bool = True):
    """(height, width, 3) colour in [0, 1] (textured, lit; CAD2RL-style randomized), and the depth."""
    dy, dz = rays if rays is not None else spec.ray_grid()
    shape = dy.shape
    dy, dz = xp.asarray(dy).reshape(-1), xp.asarray(dz).reshape(-1)
    t, surf, k = _hits(xp, scene, pos, dy, dz)
    t = xp.minimum(t, 10.0 * spec.max_range)
    hx, hy, hz = pos[0] + t, pos[1] + t * dy, pos[2] + t * dz
    cx, cy = scene.obs_xy[k, 0], scene.obs_xy[k, 1]
    rk = xp.maximum(scene.obs_r[k], 1e-6)
    onx, ony = (hx - cx) / rk, (hy - cy) / rk
    zero, one = xp.zeros_like(t), xp.ones_like(t)
    # normals and texture coordinates per surface class, selected by the hit surface
    sel = [surf == i for i in range(5)]

    def pick(*vals):
        out = vals[4]
        for i in (3, 2, 1, 0):
            out = xp.where(sel[i], vals[i], out)
        return out

    nx = pick(zero, zero, zero, zero, onx)
    ny = pick(zero, zero, -one, one, ony)
    nz = pick(one, -one, zero, zero, zero)
    u = pick(hx, hx, hx, hx, xp.arctan2(ony, onx) * rk)
    v = pick(hy, hy, hz, hz, hz)
    tex = scene.texture[surf]  # (R, 4)
    su = xp.sin(tex[:, 1] * u + tex[:, 3])
    sv = xp.sin(tex[:, 2] * v + tex[:, 3])
    stripes = xp.sin(tex[:, 1] * u + tex[:, 2] * v + tex[:, 3]) > 0
    checker = su * sv > 0
    alt = xp.where(tex[:, 0] > 0.5, checker, stripes)
    col = xp.where(alt[:, None], scene.colors[surf, 1], scene.colors[surf, 0])  # (R, 3)
    col = xp.where((surf == 4)[:, None], col * scene.tint[k], col)
    lx, ly, lz, inten, amb = (scene.light[i] for i in range(5))
    lam = amb + inten * xp.maximum(nx * lx + ny * ly + nz * lz, 0.0)
    rgb = xp.clip(col * lam[:, None], 0.0, 1.0).reshape(shape + (3,))
    depth = xp.clip(t, spec.min_range, spec.max_range).reshape(shape)
    if not pool:
        return rgb, depth
    ss = spec.supersample
    rgb_p = rgb.reshape(spec.height, ss, spec.width, ss, 3).mean(axis=(1, 3)) if ss > 1 else rgb
    return rgb_p, _pool(xp, depth, spec, "min")


def luminance(xp, rgb):
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def render_gray(xp, scene: Scene, pos, spec: CameraSpec, rays=None):
    rgb, _ = render_rgb(xp, scene, pos, spec, rays)
    return luminance(xp, rgb)


# --- camera noise (random numbers drawn by the caller: jax.random or numpy) --------------------------
def depth_noise(xp, depth, gain, gauss, dropout_mask, spec: CameraSpec, std: float, quadratic: float):
    """Measured depth: per-episode gain, gaussian noise growing with depth^2 (stereo-like), and
    dropped pixels (no return) reading max_range."""
    d = depth * gain + (std + quadratic * depth * depth) * gauss
    d = xp.where(dropout_mask, spec.max_range, d)
    return xp.clip(d, spec.min_range, spec.max_range)


def gray_noise(xp, gray, gain, bias, gauss, dropout_mask, std: float):
    """Measured intensity: per-episode gain and offset (exposure), gaussian noise, dead pixels at 0."""
    g = gray * gain + bias + std * gauss
    return xp.clip(xp.where(dropout_mask, 0.0, g), 0.0, 1.0)


# --- numpy scene sampler (the runtime's simulated world; the trainer has its own in JAX) -------------
def sample_scene_np(rng: np.random.Generator, cfg: SceneConfig = SceneConfig()) -> Scene:
    w = rng.uniform(*cfg.half_width)
    h = rng.uniform(*cfg.ceiling)
    n = int(rng.integers(cfg.obstacles[0], cfg.obstacles[1] + 1))
    K = cfg.max_obstacles
    xy = np.tile(np.array([FAR, 0.0]), (K, 1))
    r = np.zeros(K)
    for i in range(min(n, K)):
        for _ in range(cfg.candidates):
            ri = rng.uniform(*cfg.radius)
            xi = rng.uniform(cfg.x_start, cfg.length - 0.3)
            yi = rng.uniform(-1.0, 1.0) * max(w - ri - cfg.min_gap, 0.0)
            d = np.hypot(xy[:i, 0] - xi, xy[:i, 1] - yi) - r[:i] - ri
            if np.all((d >= cfg.min_gap) | (r[:i] == 0)):
                xy[i], r[i] = (xi, yi), ri
                break
    return Scene(obs_xy=xy.astype(np.float32), obs_r=r.astype(np.float32), half_width=np.float32(w),
                 ceiling=np.float32(h), **appearance_np(rng, K))


def appearance_np(rng: np.random.Generator, K: int) -> dict:
    az, el = rng.uniform(0, 2 * math.pi), rng.uniform(0.2, 1.4)
    light = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el),
                      rng.uniform(0.4, 1.0), rng.uniform(0.1, 0.5)], np.float32)
    tex = np.stack([rng.integers(0, 2, 5), rng.uniform(1, 8, 5), rng.uniform(-8, 8, 5), rng.uniform(0, 2 * math.pi, 5)], 1)
    return dict(colors=rng.uniform(0, 1, (5, 2, 3)).astype(np.float32), tint=rng.uniform(0.5, 1.0, (K, 3)).astype(np.float32),
                texture=tex.astype(np.float32), light=light)
