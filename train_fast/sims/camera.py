"""The obstacle-field camera in JAX: scene sampling with jax.random and batched rendering.

The geometry, the raycaster, the collision test and the camera noise live in edgectl/scene.py, written
over an array module so the runtime's numpy simulated camera renders the same pixels; this module binds
them to jax.numpy, registers `Scene` as a pytree (vmap over a batch of scenes) and samples scenes and
their CAD2RL-style appearance from keys. Measured render throughput: bench/sim_throughput.py is for the
dynamics; tests/test_avoid.py and the report of the avoid task give renders/s.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from edgectl import scene as sc
from edgectl.scene import CameraSpec, Scene, SceneConfig

jax.tree_util.register_dataclass(Scene, data_fields=Scene.field_names(), meta_fields=[])


def sample_appearance(key, K: int) -> dict:
    """Per-scene colours, textures (stripes/checker, random frequency, direction, phase), obstacle tints, light."""
    k = jax.random.split(key, 9)
    az = jax.random.uniform(k[0], (), minval=0.0, maxval=2 * math.pi)
    el = jax.random.uniform(k[1], (), minval=0.2, maxval=1.4)
    light = jnp.stack([jnp.cos(el) * jnp.cos(az), jnp.cos(el) * jnp.sin(az), jnp.sin(el),
                       jax.random.uniform(k[2], (), minval=0.4, maxval=1.0),
                       jax.random.uniform(k[3], (), minval=0.1, maxval=0.5)])
    tex = jnp.stack([jax.random.bernoulli(k[4], 0.5, (5,)).astype(jnp.float32),
                     jax.random.uniform(k[5], (5,), minval=1.0, maxval=8.0),
                     jax.random.uniform(k[6], (5,), minval=-8.0, maxval=8.0),
                     jax.random.uniform(k[7], (5,), minval=0.0, maxval=2 * math.pi)], axis=1)
    kc, kt = jax.random.split(k[8])
    return dict(colors=jax.random.uniform(kc, (5, 2, 3)), tint=jax.random.uniform(kt, (K, 3), minval=0.5, maxval=1.0),
                texture=tex, light=light)


def sample_scene(key, cfg: SceneConfig) -> Scene:
    """A random corridor with obstacles at least cfg.min_gap apart (and from the walls): rejection
    sampling with cfg.candidates tries per slot, all drawn up front; a slot whose tries all fail stays empty."""
    K, T = cfg.max_obstacles, cfg.candidates
    kw, kh, kn, kr, kx, ky, ka = jax.random.split(key, 7)
    w = jax.random.uniform(kw, (), minval=cfg.half_width[0], maxval=cfg.half_width[1])
    h = jax.random.uniform(kh, (), minval=cfg.ceiling[0], maxval=cfg.ceiling[1])
    n = jax.random.randint(kn, (), cfg.obstacles[0], cfg.obstacles[1] + 1)
    r = jax.random.uniform(kr, (K, T), minval=cfg.radius[0], maxval=cfg.radius[1])
    x = jax.random.uniform(kx, (K, T), minval=cfg.x_start, maxval=cfg.length - 0.3)
    y = jax.random.uniform(ky, (K, T), minval=-1.0, maxval=1.0) * jnp.maximum(w - r - cfg.min_gap, 0.0)

    def place(i, carry):
        xy, rr = carry
        d = jnp.hypot(x[i][:, None] - xy[None, :, 0], y[i][:, None] - xy[None, :, 1]) - rr[None, :] - r[i][:, None]
        ok = jnp.all((d >= cfg.min_gap) | (rr[None, :] == 0), axis=1) & (i < n)
        j = jnp.argmax(ok)
        found = jnp.any(ok)
        xy = xy.at[i].set(jnp.where(found, jnp.stack([x[i, j], y[i, j]]), jnp.array([sc.FAR, 0.0])))
        rr = rr.at[i].set(jnp.where(found, r[i, j], 0.0))
        return xy, rr

    xy0 = jnp.tile(jnp.array([sc.FAR, 0.0]), (K, 1))
    xy, rr = jax.lax.fori_loop(0, K, place, (xy0, jnp.zeros(K)))
    return Scene(obs_xy=xy, obs_r=rr, half_width=w, ceiling=h, **sample_appearance(ka, K))


def render_depth(scene: Scene, pos, spec: CameraSpec):
    return sc.render_depth(jnp, scene, pos, spec, _rays(spec))


def render_rgb(scene: Scene, pos, spec: CameraSpec, pool: bool = True):
    return sc.render_rgb(jnp, scene, pos, spec, _rays(spec), pool=pool)


def render_gray(scene: Scene, pos, spec: CameraSpec):
    return sc.render_gray(jnp, scene, pos, spec, _rays(spec))


def _rays(spec: CameraSpec):
    dy, dz = spec.ray_grid()
    return jnp.asarray(dy), jnp.asarray(dz)


def collided(scene: Scene, pos, radius):
    return sc.collided(jnp, scene, pos, radius)


def clearance(scene: Scene, pos):
    return sc.clearance(jnp, scene, pos)
