"""Quadrotor simulator throughput: env steps/s of the JAX and Numba dynamics, batched.

    python bench/sim_throughput.py [--batch-sizes 1024,4096,8192,16384] [--steps 200] [--repeats 3] [--json]

Both simulators run the same dynamics (RK4 at dt, motor lag, quaternion renormalization) with
per-vehicle randomized params, and compute every action inside the loop from the vehicle's own
state and the step index (hover thrust + PD altitude/attitude feedback + a per-step sine dither,
`edgectl.plant.quadrotor.BENCH_GAINS`), as a policy in the loop would; no precomputed
action array is read.

JAX layouts (all call the module's own `dynamics_step` under `jax.vmap` inside `jax.lax.scan`):
- `aos`: the carry is a batched `State` (leaves (N, 3), (N, 4), ...), params batched the same way.
- `soa`: the carry is a tuple of 17 arrays of shape (N,) (struct of arrays); each step packs the
  components into a per-vehicle `State` inside the vmapped function and unpacks the result, so
  XLA sees contiguous per-component arrays across the scan. Params are passed component-major too.
`--unroll` sets `lax.scan(..., unroll=k)`. Default: `soa`, unroll 1 (the fastest measured here;
`aos` was 5-10x slower and unrolling made `soa` slower and slow to compile).

Numba: `rollout_batch` (vectorized struct-of-arrays kernel), exact IEEE and fastmath builds, in
step-major order (one `prange` pass over the vehicles per step, as with a policy in the loop)
and vehicle-major order (chunks of vehicles through all steps, no per-step barrier). Step-major
is sensitive to other load on the cores: a barrier waits for a descheduled thread.

The last stdout line with --json is one JSON object. Timings are wall clock, best of --repeats,
after a warm-up run (compilation excluded). On a shared machine, trust ratios more than absolutes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform as pyplatform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

TARGET = 20e6  # env steps/s on 2 cores


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# Common setup
# ---------------------------------------------------------------------------------------------

def initial_states(n: int, seed: int, dtype) -> np.ndarray:
    """Near hover: position +-0.3 m, small tilt, velocity +-0.3 m/s, body rates +-1 rad/s."""
    from edgectl.plant import quadrotor as nq

    rng = np.random.default_rng(seed)
    x = np.zeros((n, nq.STATE_SIZE))
    x[:, 0:3] = rng.uniform(-0.3, 0.3, (n, 3))
    q = np.concatenate([np.ones((n, 1)), rng.normal(0, 0.05, (n, 3))], axis=1)
    x[:, 3:7] = q / np.linalg.norm(q, axis=1, keepdims=True)
    x[:, 7:10] = rng.uniform(-0.3, 0.3, (n, 3))
    x[:, 10:13] = rng.uniform(-1, 1, (n, 3))
    x[:, 13:17] = 0.667
    return x.astype(dtype)


_PARAMS_CACHE: dict = {}


def batched_jax_params(platform, n: int, seed: int, dtype):
    """Per-vehicle randomized params (domain randomization + disturbances), as a batched Params."""
    key = (platform.path, n, seed, np.dtype(dtype).name)
    if key not in _PARAMS_CACHE:
        _PARAMS_CACHE[key] = _batched_jax_params(platform, n, seed, dtype)
    return _PARAMS_CACHE[key]


def _batched_jax_params(platform, n: int, seed: int, dtype):
    import jax
    import jax.numpy as jnp

    from train_fast.sims import quadrotor as jq

    nominal = jq.nominal_params(platform, dtype=dtype)
    ranges = jnp.asarray(jq.randomization_ranges(platform), dtype)
    fs, ts = platform.get("disturbance.force_std"), platform.get("disturbance.torque_std")
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    params, _ = jax.jit(jax.vmap(lambda k: jq.sample_params(k, nominal, ranges, fs, ts)))(keys)
    return params


# ---------------------------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------------------------

def _jax_policy(x, hover_a, t, seed):
    """The bench action law on component arrays x[0..16] (each (N,) or scalar): list of 4."""
    import jax.numpy as jnp

    from edgectl.plant.quadrotor import BENCH_GAINS as g

    thr = hover_a - g["z"] * x[2] - g["vz"] * x[9]
    roll = -(g["att_p"] * x[4] + g["att_d"] * x[10])
    pitch = -(g["att_p"] * x[5] + g["att_d"] * x[11])
    yaw = -(g["yaw_p"] * x[6] + g["yaw_d"] * x[12])
    tf = t.astype(hover_a.dtype)
    ph = g["seed_phase"] * seed
    d = [g["dither"] * jnp.sin(g["dither_rate"] * tf + (ph + off)) for off in g["dither_offsets"]]
    raw = (thr - roll - pitch - yaw + d[0], thr - roll + pitch + yaw + d[1],
           thr + roll + pitch - yaw + d[2], thr + roll - pitch + yaw + d[3])
    return [jnp.clip(r, -1.0, 1.0) for r in raw]


def make_jax_rollout(layout: str, n_steps: int, unroll: int, seed: int):
    """Returns (jitted fn, how to build its inputs from (states np, params))."""
    import jax
    import jax.numpy as jnp

    from train_fast.sims import quadrotor as jq

    vstep = jax.vmap(jq.dynamics_step)

    if layout == "aos":
        def rollout(state: jq.State, params: jq.Params):
            hover_a = jq.motor_to_action(jq.hover_motor(params), params)

            def body(carry, _):
                s, t = carry
                x = [s.pos[:, 0], s.pos[:, 1], s.pos[:, 2], s.quat[:, 0], s.quat[:, 1], s.quat[:, 2], s.quat[:, 3],
                     s.vel[:, 0], s.vel[:, 1], s.vel[:, 2], s.omega[:, 0], s.omega[:, 1], s.omega[:, 2]]
                a = jnp.stack(_jax_policy(x, hover_a, t, seed), axis=1)
                return (vstep(s, a, params), t + 1), None

            (s, _), _ = jax.lax.scan(body, (state, jnp.int32(0)), None, length=n_steps, unroll=unroll)
            return s

        def inputs(x: np.ndarray, params):
            s = jq.State(pos=jnp.asarray(x[:, 0:3]), quat=jnp.asarray(x[:, 3:7]), vel=jnp.asarray(x[:, 7:10]),
                         omega=jnp.asarray(x[:, 10:13]), motor=jnp.asarray(x[:, 13:17]))
            return s, params

        return jax.jit(rollout), inputs

    if layout == "soa":
        def one(xs, a0, a1, a2, a3, p: jq.Params):
            s = jq.State(pos=jnp.stack(xs[0:3]), quat=jnp.stack(xs[3:7]), vel=jnp.stack(xs[7:10]),
                         omega=jnp.stack(xs[10:13]), motor=jnp.stack(xs[13:17]))
            s = jq.dynamics_step(s, jnp.stack([a0, a1, a2, a3]), p)
            return (*(s.pos[i] for i in range(3)), *(s.quat[i] for i in range(4)), *(s.vel[i] for i in range(3)),
                    *(s.omega[i] for i in range(3)), *(s.motor[i] for i in range(4)))

        # Params component-major: vector leaves are (k, N), mapped over axis 1.
        p_axes = jq.Params(mass=0, inertia=1, gravity=0, rotor_x=1, rotor_y=1, spin=1, thrust_max=0, thrust_shape=1,
                           torque_coefficient=0, motor_tau=0, motor_tau_down=0, drag=0, motor_min=0, dt=0,
                           force=1, torque=1)
        vone = jax.vmap(one, in_axes=(0, 0, 0, 0, 0, p_axes))

        def rollout(xs, params: jq.Params):
            hover_a = jq.motor_to_action(jq.hover_motor(params), params)

            def body(carry, _):
                xs, t = carry
                a = _jax_policy(xs, hover_a, t, seed)
                return (vone(xs, *a, params), t + 1), None

            (xs, _), _ = jax.lax.scan(body, (tuple(xs), jnp.int32(0)), None, length=n_steps, unroll=unroll)
            return xs

        def inputs(x: np.ndarray, params):
            xs = tuple(jnp.asarray(np.ascontiguousarray(x[:, i])) for i in range(x.shape[1]))
            pt = jax.tree_util.tree_map(lambda leaf: leaf.T if leaf.ndim == 2 else leaf, params)
            return xs, pt

        return jax.jit(rollout), inputs

    raise ValueError(f"unknown JAX layout {layout!r}")


def bench_jax(platform, sizes, steps, repeats, layouts, unrolls, dtype_name, seed):
    import jax

    results = []
    for layout in layouts:
        for unroll in unrolls:
            for n in sizes:
                dtype = np.float64 if dtype_name == "float64" else np.float32
                params = batched_jax_params(platform, n, seed, dtype)
                fn, inputs = make_jax_rollout(layout, steps, unroll, seed)
                args = inputs(initial_states(n, seed, dtype), params)
                t0 = time.perf_counter()
                out = jax.block_until_ready(fn(*args))  # compile + warm-up
                compile_s = time.perf_counter() - t0
                finite = bool(np.all(np.isfinite(np.asarray(jax.tree_util.tree_leaves(out)[0]))))
                best = float("inf")
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    jax.block_until_ready(fn(*args))
                    best = min(best, time.perf_counter() - t0)
                rate = n * steps / best
                results.append({"sim": "jax", "variant": f"{layout}/unroll={unroll}", "batch": n,
                                "steps_per_s": rate, "best_s": best, "compile_s": compile_s, "finite": finite})
                log(f"jax   {layout:4s} unroll={unroll:<2d} N={n:6d}: {rate / 1e6:7.2f} M steps/s "
                    f"(best {best * 1e3:7.1f} ms of {repeats}, compile+warm-up {compile_s:.1f} s)")
    return results


# ---------------------------------------------------------------------------------------------
# Numba
# ---------------------------------------------------------------------------------------------

def bench_numba(platform, sizes, steps, repeats, dtype_name, seed, params_batched, orders):
    import numba

    from edgectl.plant import quadrotor as nq

    dtype = np.float64 if dtype_name == "float64" else np.float32
    results = []
    for order in orders:
        for fastmath in (False, True):
            name = f"{order}-major/{'fastmath' if fastmath else 'exact'}"
            for n in sizes:
                states = initial_states(n, seed, dtype)
                params = nq.params_to_array(params_batched(n)) if params_batched else nq.params_from_platform(platform)
                t0 = time.perf_counter()
                out = nq.rollout_batch(states, steps, params, seed, fastmath=fastmath, order=order)  # warm-up
                warm_s = time.perf_counter() - t0
                best = float("inf")
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    nq.rollout_batch(states, steps, params, seed, fastmath=fastmath, order=order)
                    best = min(best, time.perf_counter() - t0)
                rate = n * steps / best
                results.append({"sim": "numba", "variant": name, "batch": n, "steps_per_s": rate, "best_s": best,
                                "compile_s": warm_s, "finite": bool(np.all(np.isfinite(out))),
                                "threads": numba.get_num_threads()})
                log(f"numba {name:23s} N={n:6d}: {rate / 1e6:7.2f} M steps/s "
                    f"(best {best * 1e3:7.1f} ms of {repeats}, first call {warm_s:.2f} s, {numba.get_num_threads()} threads)")
    return results


# ---------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-sizes", default="1024,4096,8192,16384", help="comma-separated vehicle counts")
    ap.add_argument("--steps", type=int, default=200, help="env steps per timed rollout")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per configuration (best is reported)")
    ap.add_argument("--jax-layouts", default="soa", help="comma-separated subset of soa,aos ('' to skip JAX)")
    ap.add_argument("--unroll", default="1", help="comma-separated lax.scan unroll factors to try")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--numba-orders", default="step,vehicle",
                    help="comma-separated subset of step,vehicle (rollout_batch loop order; '' to skip Numba)")
    ap.add_argument("--shared-params", action="store_true",
                    help="Numba: one params array for all vehicles (default: per-vehicle randomized, as JAX)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="last stdout line: one JSON object with all results")
    args = ap.parse_args(argv)

    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    layouts = [s.strip() for s in args.jax_layouts.split(",") if s.strip()]
    unrolls = [int(s) for s in args.unroll.split(",") if s.strip()]
    if any(n <= 0 for n in sizes) or args.steps <= 0 or args.repeats <= 0 or any(u <= 0 for u in unrolls):
        ap.error("batch sizes, steps, repeats and unroll must be positive")
    if set(layouts) - {"soa", "aos"}:
        ap.error(f"unknown JAX layout(s): {sorted(set(layouts) - {'soa', 'aos'})}")
    orders = [s.strip() for s in args.numba_orders.split(",") if s.strip()]
    if set(orders) - {"step", "vehicle"}:
        ap.error(f"unknown Numba order(s): {sorted(set(orders) - {'step', 'vehicle'})}")

    if args.dtype == "float64":
        import jax
        jax.config.update("jax_enable_x64", True)

    from edgectl.platforms import load_platform

    platform = load_platform(REPO / "hardware" / "crazyflie_2_1.toml")
    t_start = time.perf_counter()
    log(f"# quadrotor sim throughput: {args.dtype}, {args.steps} steps per rollout, best of {args.repeats}, "
        f"{os.cpu_count()} CPUs, {pyplatform.processor() or pyplatform.machine()}")

    results = []
    if layouts:
        import jax
        log(f"# jax {jax.__version__} on {jax.devices()[0].platform}")
        results += bench_jax(platform, sizes, args.steps, args.repeats, layouts, unrolls, args.dtype, args.seed)
    if orders:
        import numba
        log(f"# numba {numba.__version__}, threading layer after first run below")
        params_batched = None
        if not args.shared_params:
            import jax.numpy as jnp
            dt = jnp.float64 if args.dtype == "float64" else jnp.float32
            params_batched = lambda n: batched_jax_params(platform, n, args.seed, dt)  # noqa: E731
        results += bench_numba(platform, sizes, args.steps, args.repeats, args.dtype, args.seed, params_batched, orders)
        try:
            log(f"# numba threading layer: {numba.threading_layer()}")
        except ValueError:
            pass

    if not results:
        ap.error("nothing to run")
    best = max(results, key=lambda r: r["steps_per_s"])
    meets = best["steps_per_s"] >= TARGET
    by_sim = {}
    for r in results:
        k = f"jax/{r['variant'].split('/')[0]}" if r["sim"] == "jax" else f"numba/{r['variant']}"
        if k not in by_sim or r["steps_per_s"] > by_sim[k]["steps_per_s"]:
            by_sim[k] = r
    for k, r in by_sim.items():
        log(f"# best {k:30s}: {r['steps_per_s'] / 1e6:6.2f} M steps/s ({r['variant']}, N={r['batch']})")
    log(f"BEST: {best['sim']} {best['variant']} N={best['batch']}: {best['steps_per_s'] / 1e6:.2f} M env steps/s; "
        f"target >= {TARGET / 1e6:.0f} M/s on 2 cores: {'MET' if meets else 'NOT MET'} "
        f"(total {time.perf_counter() - t_start:.0f} s)")
    if args.json:
        print(json.dumps({"dtype": args.dtype, "steps": args.steps, "repeats": args.repeats, "batch_sizes": sizes,
                          "results": results, "best": best, "target_steps_per_s": TARGET, "meets_target": meets}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
