"""Sabotage demonstration: make a good policy bad on purpose, fly it with and without the shield.

Three sabotages (``SABOTAGES``):

- ``undertrained``: no early checkpoint is kept in a bundle, so one is emulated by blending every
  weight and bias with a fresh initialization of the trainer's actor (orthogonal, gain sqrt 2 on
  hidden layers, 0.01 on the output, output bias = hover), ``(1 - UNDERTRAINED_MIX) * trained +
  UNDERTRAINED_MIX * init``: a policy that has the right idea but not the precision, as a policy a
  few seconds into training is. The cliff is steep (measured, 200 episodes: mix 0.30 breaks the
  specs in 7 % of episodes, 0.33 in 80 %, 0.35 in 97 %). Training 3 s with ``train_fast.train.train``
  is the other way; it costs a JIT compile, ~10 s cold, in every test run, and its quality varies.
- ``noise``: observation noise (``NOISE_OBS``: 7.5 cm, 0.375 m/s, 1.25 rad/s, 0.125 per rotation
  entry: 60-600 x the platform's sensor noise; at a third of it the policy shrugs it off) and action
  noise (``NOISE_ACTION``) on the policy's path; the shield's own state estimate is the clean one.
- ``weak-motor``: a plant change, rotor M1's thrust coefficient x 0.7 (see
  ``train_fast.safety_rollout._weaken``); nobody tells the policy, the shield or the backup.

Specs (``shield.DEFAULT_SPECS``, margin 0.15): stay within 0.5 m of the hover point on every axis
and bank under 1.0 rad, at every instant. Not trivially met: without the shield the sabotaged
policies break them in 32-76 % of episodes; met by the good policy (worst episode 0.14 m inside).
The platform file's own [safety] specs (a floor and a bank limit, margin 0.05) can be flown instead
(``specs="platform"``); they say nothing about drifting sideways, so a shielded weak-rotor vehicle
still leaves the task's 0.6 m bound in 16 % of episodes, and with margin 0.05 the noise sabotage
breaks the floor in 3 of 1,000.

The start distribution (``DEMO_START``) is the hover task's with tilt limited to 0.5 rad and
velocity to 0.5 m/s per axis: from there the specs hold at t = 0 (0.2 m offset within the 0.5 m
box, 0.5 rad within 1.0 rad) and the backup alone keeps them from every start (measured: worst
0.31 m, 0.81 rad over 2,000 starts, weak rotor included), so a violation is the policy's doing.
With the full hover start (90 deg, 1 m/s per axis) even the backup leaves the box from ~4 % of
the starts, and the acceptance of zero violations would measure the start, not the shield.
"""
from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np

SABOTAGES = ("undertrained", "noise", "weak-motor")
UNDERTRAINED_MIX = 0.33
# Raw observation noise std per contract field (hover: position_error, rotation_matrix,
# velocity_error, angular_velocity, previous_actions).
NOISE_OBS = {"position_error": 0.075, "rotation_matrix": 0.125, "velocity_error": 0.375, "angular_velocity": 1.25,
             "previous_actions": 0.0, "reference_acceleration": 0.0, "position_error_integral": 0.0}
NOISE_ACTION = 0.25
WEAK_MOTOR, WEAK_FACTOR = 0, 0.7
DEMO_START = {"init_tilt": 0.5, "init_velocity": 0.5}


def _orthogonal(rng, n_in: int, n_out: int, gain: float) -> np.ndarray:
    a = rng.standard_normal((max(n_in, n_out), min(n_in, n_out)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    q = q if n_in >= n_out else q.T
    return gain * q[:n_in, :n_out]


def undertrained_layers(bundle, mix: float | None = None, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    mix = UNDERTRAINED_MIX if mix is None else mix
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"undertrained: mix must be in [0, 1], got {mix}")
    rng = np.random.default_rng(seed)
    hover = float(bundle.contract["action"]["hover_action"])
    out, last = [], len(bundle.layers) - 1
    for i, (w, b) in enumerate(bundle.layers):
        w0 = _orthogonal(rng, *w.shape, 0.01 if i == last else math.sqrt(2.0))
        b0 = np.full(b.shape, hover) if i == last else np.zeros(b.shape)
        out.append((((1 - mix) * w + mix * w0).astype(np.float32), ((1 - mix) * b + mix * b0).astype(np.float32)))
    return out


def plant_sabotage(bundle, name: str | None):
    """The ``PlantSabotage`` of a sabotage name (None: nothing)."""
    from train_fast.safety_rollout import PlantSabotage

    if name is None or name == "undertrained":
        return PlantSabotage()
    if name == "noise":
        std = []
        for f in bundle.contract["observation"]["fields"]:
            if f["name"] not in NOISE_OBS:
                raise ValueError(f"noise sabotage: no noise level for observation field {f['name']!r}")
            std += [NOISE_OBS[f["name"]]] * f["size"]
        return PlantSabotage(obs_noise=tuple(std), action_noise=NOISE_ACTION)
    if name == "weak-motor":
        f = [1.0] * 4
        f[WEAK_MOTOR] = WEAK_FACTOR
        return PlantSabotage(thrust_factor=tuple(f))
    raise ValueError(f"sabotage: unknown kind {name!r}; choose one of {', '.join(SABOTAGES)}")


def describe(name: str | None) -> str:
    return {None: "none",
            "undertrained": f"weights blended {UNDERTRAINED_MIX:.0%} with a fresh actor initialization",
            "noise": f"observation noise {NOISE_OBS} (raw units), action noise std {NOISE_ACTION}",
            "weak-motor": f"rotor M{WEAK_MOTOR + 1} thrust coefficient x {WEAK_FACTOR}"}[name]


def demo_config(platform=None, specs: str = "demo"):
    """The shield configuration of the demonstration: ``specs="demo"`` the box and bank specs above
    with their margin, ``"platform"`` the platform file's [safety] section; hold-off and horizon
    from the platform file where it has them; starting under the backup."""
    from edgectl.safety.shield import DEFAULT_MARGIN, DEFAULT_SPECS, ShieldConfig

    if specs not in ("demo", "platform"):
        raise ValueError(f"specs: expected 'demo' or 'platform', got {specs!r}")
    base = ShieldConfig() if platform is None else ShieldConfig.from_platform(platform)
    base = replace(base, start_in_backup=True)  # episodes start mid-air, observers cold: see ShieldConfig
    return base if specs == "platform" else replace(base, specs=DEFAULT_SPECS, margin=DEFAULT_MARGIN)


_RUNS: dict = {}  # compiled rollouts, by everything that shapes them


def evaluate_shielded(bundle, episodes: int = 1000, seed: int = 12345, sabotage: str | None = None,
                      shield: bool = True, config=None, start: dict | None = None, samples: int | None = None,
                      gains=None, specs: str = "demo", log_episodes: int = 3) -> dict:
    """Fly ``episodes`` hover episodes (5 s each) of the bundle's policy, sabotaged or not, with or
    without the shield, and report spec violations, survival, how much the policy was in control
    and the switches. An episode violates a spec if the spec's robustness over its whole actual
    trajectory (the minimum over time of the robustness at every sample) is below zero."""
    import jax

    from edgectl.platforms import load_platform
    from edgectl.safety.shield import reason_text
    from train_fast import safety_rollout as sr
    from train_fast.evaluate import bundle_policy, env_for_bundle
    from train_fast.train import _setup_jax

    if sabotage is not None and sabotage not in SABOTAGES:
        raise ValueError(f"sabotage: unknown kind {sabotage!r}; choose one of {', '.join(SABOTAGES)}")
    _setup_jax()
    t0 = time.time()
    env = env_for_bundle(bundle)
    start = dict(DEMO_START if start is None else start)
    known = {"init_tilt", "init_velocity", "init_position", "init_omega"}
    if set(start) - known:
        raise ValueError(f"start: unknown field(s) {sorted(set(start) - known)}; known: {sorted(known)}")
    env = replace(env, cfg=replace(env.cfg, **start))
    if config is None:
        # Hold-off and horizon (and, with specs="platform", the specs) from the current platform
        # file: the bundle's copy may predate its [safety] section.
        config = demo_config(load_platform(bundle.platform_name), specs)
    if samples is not None:
        config = replace(config, samples=samples)
    formulas = config.formulas("quadrotor")
    params, apply = bundle_policy(bundle)
    if sabotage == "undertrained":
        import jax.numpy as jnp
        params = [{"w": jnp.asarray(w), "b": jnp.asarray(b)} for w, b in undertrained_layers(bundle)]
    key = (str(bundle.path), env.cfg, episodes, config, shield, gains)
    if key not in _RUNS:
        _RUNS[key] = sr.make_shielded_rollout(env, apply, episodes, config, shield=shield, gains=gains)
    run = _RUNS[key]
    out = jax.device_get(run(params, jax.random.PRNGKey(seed), plant_sabotage(bundle, sabotage).arrays(env.obs_size)))
    rob = sr.episode_robustness(formulas, out["signals"], config.dt)  # (S, N)
    violated = ~(rob >= 0.0)
    to_b, to_n = np.asarray(out["to_backup"]), np.asarray(out["to_nominal"])
    nominal = np.asarray(out["nominal"])
    alive = np.asarray(out["survived"])
    res = {
        "episodes": int(episodes),
        "eval_seed": int(seed),
        "sabotage": sabotage or "none",
        "sabotage_description": describe(sabotage),
        "shield": bool(shield),
        "specs": list(config.specs),
        "shield_margin": list(config.margins),
        "shield_holdoff_s": config.holdoff_s,
        "shield_horizon_s": config.horizon_s,
        "shield_samples": config.samples,
        "start": {k: getattr(env.cfg, k) for k in sorted(known)},
        "violation_rate": float(violated.any(axis=0).mean()),
        "violations": int(violated.any(axis=0).sum()),
        "violation_rate_per_spec": [float(v.mean()) for v in violated],
        "episode_robustness_min": float(np.min(rob)),
        "survival_rate": float(alive.mean()),
        "nominal_fraction": float(nominal.mean()),
        # with config.start_in_backup every episode starts on the backup and hands to the policy once the prediction
        # is safe: those ticks are neither the policy's nor a switch to the backup
        "start_backup_fraction": float(np.where(nominal.any(axis=0), nominal.argmax(axis=0), nominal.shape[0]).sum()
                                       / nominal.size) if shield and config.start_in_backup else 0.0,
        "switches_to_backup": int(to_b.sum()),
        "switches_to_nominal": int(to_n.sum()),
        "switches_per_episode_mean": float((to_b.sum(0) + to_n.sum(0)).mean()),
        "switches_per_episode_max": int((to_b.sum(0) + to_n.sum(0)).max()),
        "episodes_with_backup": int(to_b.any(axis=0).sum()),
    }
    # The switch log of the first few episodes that switched (time, direction, spec, robustness).
    worst, wrob = np.asarray(out["worst_spec"]), np.asarray(out["robustness"])
    logs = []
    for ep in np.flatnonzero(to_b.any(axis=0))[:log_episodes]:
        events = []
        for t in np.flatnonzero(to_b[:, ep] | to_n[:, ep]):
            back = bool(to_b[t, ep])
            spec, r = int(worst[t, ep]), float(wrob[t, ep])
            if not np.isfinite(r):
                spec = -1
            events.append({"t": round(float(t * config.dt), 4), "direction": "to_backup" if back else "to_nominal",
                           "spec": spec, "robustness": r, "reason": reason_text(config, spec, r, safe=not back)})
        logs.append({"episode": int(ep), "events": events})
    res["switch_log"] = logs
    res["eval_seconds"] = time.time() - t0
    return res
