"""Shielded closed-loop rollouts in JAX: the predictive shield of ``edgectl/safety/shield.py``
for a whole batch of episodes under one jit.

Per tick and vehicle: the shield predicts H steps ahead under the nominal policy from the state
estimate (nominal parameters, noise-free observations, rotor speeds from the backup controller's
model of the commands sent), takes each spec's robustness at the first sample of the predicted
trace minus its margin, and applies the decision rule of ``shield.Shield``: nominal -> backup on a
negative value or a non-finite estimate; backup -> nominal after the hold-off once the prediction
is safe again. The plant is the task's randomized vehicle, with the sabotage applied: observation
and action noise on the policy's path, a weak rotor on the plant.

1,000 vehicles x 500 ticks x H = 50 is 25 M predicted steps (with the policy's MLP on each):
22-35 s on this two-core machine, compile included; K > 1 predicted copies multiply that.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from edgectl.safety import backup as bk
from edgectl.safety.shield import BACKUP, NOMINAL, ShieldConfig
from edgectl.safety.signals import signals_from_state
from train_fast.sims import quadrotor as quad
from train_fast.tasks import quadrotor_tasks as qt


def backup_jax_step(model: bk.BackupModel, gains: bk.BackupGains):
    """``(cs, pos, quat, vel, omega) -> (cs, action)``: the backup law (edgectl.safety.backup.step, written for any
    array module) in jax.numpy, for jitted/vmapped rollouts. Here, not in edgectl.safety: the robot side never
    imports JAX."""
    def fn(cs, pos, quat, vel, omega):
        return bk.step(model, gains, cs, pos, quat, vel, omega, xp=jnp)

    return fn


@dataclass(frozen=True)
class PlantSabotage:
    """What is done to the plant and to the policy's inputs/outputs (the weights are changed
    before, see train_fast/sabotage.py). Defaults: nothing. Passed to ``run`` as arrays, so one compiled
    rollout flies every sabotage."""
    obs_noise: tuple[float, ...] | None = None  # extra std per raw observation entry
    action_noise: float = 0.0  # std added to each action before clipping
    thrust_factor: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # per rotor M1..M4

    def arrays(self, obs_size: int) -> dict:
        noise = np.zeros(obs_size) if self.obs_noise is None else np.asarray(self.obs_noise, np.float64)
        if noise.shape != (obs_size,):
            raise ValueError(f"sabotage obs_noise: {noise.size} values, the observation has {obs_size}")
        f = np.asarray(self.thrust_factor, np.float64)
        if f.shape != (4,) or not np.all((f > 0) & (f <= 1)):
            raise ValueError(f"sabotage thrust_factor: expected 4 factors in (0, 1], got {self.thrust_factor!r}")
        return {"obs_noise": noise.astype(np.float32), "action_noise": np.float32(self.action_noise),
                "speed_factor": np.sqrt(f).astype(np.float32)}


def _weaken(action, params: quad.Params, speed_factor):
    """The plant's side of weak rotors. Params.thrust_max is one number for all rotors, so a
    rotor's thrust coefficient x f is applied as its speed command x sqrt(f): thrust = k rpm^2,
    the yaw torque is per newton of thrust and the rotor lag is linear, so the forces and torques
    are exactly those of a rotor with k f (for motor_min = 0, as on the Crazyflie)."""
    return quad.motor_to_action(quad.action_to_motor(action, params) * speed_factor, params)


def make_shielded_rollout(env: qt.QuadEnv, apply, episodes: int, config: ShieldConfig, *, shield: bool = True,
                          gains: bk.BackupGains | None = None):
    """Jitted ``run(policy_params, key, plant) -> dict`` of per-episode and per-tick arrays, with
    ``plant = PlantSabotage(...).arrays(env.obs_size)``:

    survived (N,), nominal (T, N) bool (the policy was in control that tick), to_backup /
    to_nominal (T, N) bool (switches at that tick), worst_spec (T, N) int and robustness (T, N)
    (predicted, before margin, of the spec deciding), signals: {name: (N, T + 1)} of the actual
    trajectory (start state included) for the specs' signals.
    """
    formulas = config.formulas("quadrotor")
    dt = float(env.nominal.dt)
    if abs(dt - config.dt) > 1e-6:  # the task keeps dt in float32
        raise ValueError(f"shield config dt = {config.dt} s, the task steps at {dt} s")
    dt = config.dt  # the exact value, as the specs' bounds were checked against it
    H, K = config.horizon_steps, config.samples
    margins = jnp.asarray(config.margins, jnp.float32)
    holdoff = config.holdoff_steps
    model = bk.model_from_params(jax.tree_util.tree_map(np.asarray, env.nominal))
    gains = gains or bk.BackupGains()
    bstep = backup_jax_step(model, gains)
    n_steps = env.episode_steps
    names = sorted({s for f in formulas for s in f.signals})
    ref0 = jnp.zeros(3)  # hover: the reference is the origin (figure8 would need the moving one)
    if qt.tracks_reference(env.cfg):
        raise ValueError(f"shielded rollouts fly the hover task, the bundle's task is {env.cfg.name!r}")

    def predict(pp, s: qt.EnvState, cs, pred_params):
        """Robustness per spec (S, N) of H predicted steps from every vehicle's estimate."""
        def one_copy(params):
            if config.adaptive:  # what the observers see the model missing, as a constant force and torque
                params = replace(params, force=params.force + params.mass[:, None] * cs["fdist"],
                                 torque=params.torque + params.inertia * cs["dist"])
            def body(st, _):
                obs = jax.vmap(qt._fields, in_axes=(None, 0))(env, st)  # noise-free: a prediction
                a = jnp.clip(apply(pp, obs), -1.0, 1.0)
                st2, _, _, _ = jax.vmap(qt.step, in_axes=(None, 0, 0, None))(None, st, a, env)
                return st2, (st2.sim.pos, st2.sim.quat, st2.sim.vel, st2.sim.omega)

            sim0 = quad.State(pos=s.sim.pos, quat=s.sim.quat, vel=s.sim.vel, omega=s.sim.omega, motor=cs["motor"])
            st0 = qt.EnvState(sim=sim0, params=params, factors=s.factors, t=s.t, phase=s.phase, prev_actions=s.prev_actions, delay=s.delay,
                               integral=s.integral, gyro_bias=s.gyro_bias, rate=s.rate)
            _, tr = jax.lax.scan(body, st0, None, length=H)
            pos, quat, vel, om = (jnp.concatenate([x0[None], x], axis=0) for x0, x in
                                  zip((sim0.pos, sim0.quat, sim0.vel, sim0.omega), tr))  # (H+1, N, .)
            sig = signals_from_state(*(jnp.moveaxis(v, 0, 1) for v in (pos, quat, vel, om)), ref0)  # (N, H+1)
            return jnp.stack([f.robustness_jax(sig, dt)[..., 0] for f in formulas])  # (S, N)

        robs = jax.vmap(one_copy)(pred_params)  # (K, S, N)
        return jnp.min(robs, axis=0)

    def run(pp, key, plant):
        k_reset, k_run, k_pred = jax.random.split(key, 3)
        s0 = jax.vmap(qt.reset, in_axes=(0, None))(jax.random.split(k_reset, episodes), env)
        # Predicted copies: copy 0 the nominal vehicle, the others randomized like the task's vehicles,
        # one draw per copy and vehicle, kept for the episode.
        nominal_b = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (K, episodes) + jnp.shape(x)), env.nominal)
        if K > 1:
            keys = jax.random.split(k_pred, (K - 1) * episodes)
            rnd, _ = jax.vmap(quad.sample_params, in_axes=(0, None, None, None, None))(
                keys, env.nominal, env.ranges, env.force_std, env.torque_std)
            rnd = jax.tree_util.tree_map(lambda x: x.reshape((K - 1, episodes) + x.shape[1:]), rnd)
            pred_params = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a[:1], b], 0), nominal_b, rnd)
        else:
            pred_params = nominal_b
        cs0 = bk.init_state(model, s0.sim.pos, target=jnp.zeros((episodes, 3)), motor=s0.sim.motor, xp=jnp)
        mode0 = BACKUP if (shield and config.start_in_backup) else NOMINAL
        carry0 = (s0, jnp.ones(episodes, bool), jnp.full(episodes, mode0, jnp.int32),
                  jnp.full(episodes, 0 if mode0 == BACKUP else -10**6, jnp.int32), cs0)

        def tick(carry, xs):
            s, alive, mode, t_switch, cs = carry
            k, t = xs
            ko, kn = jax.random.split(k)
            obs = jax.vmap(qt.observe, in_axes=(0, None, 0))(jax.random.split(ko, episodes), env, s)
            kon, kan = jax.random.split(kn)
            obs = obs + plant["obs_noise"] * jax.random.normal(kon, obs.shape)
            a_nom = apply(pp, obs) + plant["action_noise"] * jax.random.normal(kan, (episodes, 4))
            a_nom = jnp.clip(a_nom, -1.0, 1.0)

            if shield:
                est = (s.sim.pos, s.sim.quat, s.sim.vel, s.sim.omega)
                finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v), axis=-1) for v in est]), axis=0)
                rob = predict(pp, s, cs, pred_params)  # (S, N)
                slack = rob - margins[:, None]
                worst = jnp.argmin(slack, axis=0)
                worst_rob = jnp.take_along_axis(rob, worst[None], axis=0)[0]
                safe = finite & (jnp.min(slack, axis=0) >= 0.0)  # NaN >= 0 is False: unsafe
                to_b = (mode == NOMINAL) & ~safe
                to_n = (mode == BACKUP) & safe & (t - t_switch >= holdoff)
                mode = jnp.where(to_b, BACKUP, jnp.where(to_n, NOMINAL, mode))
                t_switch = jnp.where(to_b | to_n, t, t_switch)
                engaged = bk.engage(model, cs, jnp.nan_to_num(s.sim.pos), target=jnp.zeros((episodes, 3)), xp=jnp)
                cs = jax.tree_util.tree_map(lambda e, c: jnp.where(to_b.reshape((-1,) + (1,) * (c.ndim - 1)), e, c), engaged, cs)
                est = tuple(jnp.where(finite[:, None], v, jnp.nan) for v in est)
                cs_b, a_b = bstep(cs, *est)
                use_b = mode == BACKUP
                a = jnp.where(use_b[:, None], a_b, a_nom)
                cs_n = bk.observe(model, gains, cs, est[1], est[2], est[3], a, xp=jnp)
                cs = jax.tree_util.tree_map(lambda b, n: jnp.where(use_b.reshape((-1,) + (1,) * (b.ndim - 1)), b, n), cs_b, cs_n)
            else:
                to_b = to_n = jnp.zeros(episodes, bool)
                worst, worst_rob, a = jnp.zeros(episodes, jnp.int32), jnp.full(episodes, jnp.nan), a_nom

            plant_a = jax.vmap(_weaken, in_axes=(0, 0, None))(a, s.params, plant["speed_factor"])
            s2, _, term, _ = jax.vmap(qt.step, in_axes=(None, 0, 0, None))(k, s, plant_a, env)
            # The policy's observation holds the action it (or the backup) sent, not the plant's.
            s2 = qt.EnvState(sim=s2.sim, params=s2.params, factors=s2.factors, t=s2.t, phase=s2.phase,
                             prev_actions=jnp.concatenate([a, s.prev_actions[:, :-4]], axis=1)
                             if env.cfg.action_history > 0 else s2.prev_actions, delay=s2.delay,
                             integral=s2.integral, gyro_bias=s2.gyro_bias, rate=s2.rate)
            alive = alive & ~term
            sig = signals_from_state(s2.sim.pos, s2.sim.quat, s2.sim.vel, s2.sim.omega, ref0)
            out = {"nominal": mode == NOMINAL, "to_backup": to_b, "to_nominal": to_n, "worst_spec": worst.astype(jnp.int8),
                   "robustness": worst_rob, "sig": {n: sig[n] for n in names}}
            return (s2, alive, mode, t_switch, cs), out

        (_, alive, _, _, _), per_tick = jax.lax.scan(tick, carry0, (jax.random.split(k_run, n_steps), jnp.arange(n_steps)))
        sig0 = signals_from_state(s0.sim.pos, s0.sim.quat, s0.sim.vel, s0.sim.omega, ref0)
        signals = {n: jnp.concatenate([sig0[n][:, None], per_tick["sig"][n].T], axis=1) for n in names}
        return {"survived": alive, "nominal": per_tick["nominal"], "to_backup": per_tick["to_backup"],
                "to_nominal": per_tick["to_nominal"], "worst_spec": per_tick["worst_spec"],
                "robustness": per_tick["robustness"], "signals": signals}

    return jax.jit(run)


def episode_robustness(formulas, signals: dict, dt: float) -> np.ndarray:
    """(S, N): each spec's robustness over each whole actual trajectory: the minimum over time of
    its robustness at every sample (the spec must hold at every instant, not only at t = 0)."""
    out = []
    for f in formulas:
        r = f.robustness({k: np.asarray(v, np.float64) for k, v in signals.items()}, dt)
        r = np.where(np.isnan(r), -np.inf, r)
        out.append(np.min(r, axis=-1))
    return np.stack(out)
