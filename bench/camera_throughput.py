"""Benchmark: the avoid task's camera and environment throughput (JAX, CPU).

Prints renders/s of the raycast camera (depth and gray: textured, lit) for a batch of random scenes, and
env steps/s of the whole avoid step (dynamics, collision, reward) plus the actor's observation (render
+ noise), as PPO runs them (vmap over the batch, jitted).

    python3 bench/camera_throughput.py [--batch 1024] [--repeats 10]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _rate(fn, args, n, repeats):
    import jax
    jax.block_until_ready(fn(*args))
    t = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return n * repeats / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    import jax
    import jax.numpy as jnp

    from train_fast.sims import camera as cam
    from train_fast.tasks import avoid_tasks as at

    n = args.batch
    cfg = at.TaskConfig()
    spec = cfg.camera()
    env = at.make_env(cfg)
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    s = jax.jit(jax.vmap(at.reset, in_axes=(0, None)), static_argnums=1)(keys, env)
    pos = s.pos
    print(f"camera {spec.width}x{spec.height} (rendered {spec.width * spec.supersample}x{spec.height * spec.supersample} rays, "
          f"{cfg.max_obstacles} obstacle slots), batch {n}, {jax.devices()[0].platform}")
    for name, f in (("depth", cam.render_depth), ("gray", cam.render_gray)):
        fn = jax.jit(jax.vmap(lambda sc_, p, f=f: f(sc_, p, spec)))
        print(f"  {name:5s}: {_rate(fn, (s.scene, pos), n, args.repeats):12,.0f} renders/s")

    @jax.jit
    def env_step(s, key):
        k1, k2 = jax.random.split(key)
        obs = jax.vmap(at.observe, in_axes=(0, None, 0))(jax.random.split(k1, n), env, s)
        a = jnp.tanh(obs[:, :2])  # a stand-in for the actor, so the observation is used
        s2, r, term, trunc = jax.vmap(at.step, in_axes=(0, 0, 0, None))(jax.random.split(k2, n), s, a, env)
        return s2, r
    print(f"  env step + observation (depth): {_rate(env_step, (s, jax.random.PRNGKey(1)), n, args.repeats):12,.0f} env steps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
