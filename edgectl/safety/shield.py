"""Predictive shield: fly the learned policy while its predicted future satisfies the specs.

Every tick, from the current state estimate, the simulator is rolled H steps ahead under the
NOMINAL policy (the one flying, as the shield knows it: nominal platform parameters, no noise;
optionally K - 1 more copies with randomized parameters and disturbances). Each spec's robustness
is evaluated on the predicted trace [now, now + dt, ..., now + H dt] at its first sample, minus the
spec's margin. Then:

- nominal -> backup as soon as the smallest value is negative, or the state estimate is not finite
  or incomplete (a NaN is a reason to switch, never a pass);
- backup -> nominal only when at least ``holdoff_s`` has passed since the switch AND the prediction
  is safe again (so a marginal prediction cannot make the controllers chatter).

Every switch is logged (``SwitchEvent``: time, direction, reason, spec, robustness). The backup
controller (``backup.py``) keeps its rotor-speed estimate current while the policy flies, and the
predictions start from that estimate: rotor speeds are not measured.

This module is the host-side, single-vehicle shield for ``edgectl run``: numpy policy (a bundle's
``act`` or any ``(K, obs) -> (K, 4)`` callable) and the Numba simulator, no JAX. The batched JAX
version for 1,000-episode evaluations is ``train_fast/safety_rollout.py``, with the same decision
rule; ``ShieldConfig`` is shared.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgectl.observation import SUPPORTED_FIELDS as _SUPPORTED_FIELDS
from edgectl.observation import check_contract, observation  # noqa: F401  (observation: re-exported)
from edgectl.safety import backup as bk

# Used when the platform file has no [safety] section, and by the sabotage demonstration: within
# 0.5 m of the hover point on every axis (tighter than the task's 0.6 m crash bound, so a violation
# is flagged before a crash; a box, because a room has walls as well as a floor) and banked under
# 1.0 rad. The margin is what the backup needs to turn a vehicle the policy has set going the wrong
# way (measured, 1,000-episode sabotage runs): 0.05 let 1 in 1,000 episodes through (handed over at
# 0.4 m and 1 m/s, the backup could not stop in the last 0.1 m), 0.1 about 1 in 3,000 (a policy
# banked 0.84 rad the wrong way at 1.1 m/s); 0.15 none in 12,000 (four seeds, three sabotages),
# and the good policy's predictions never come near it.
DEFAULT_SPECS = (
    "always[0,0.5](abs(ex) <= 0.5 and abs(ey) <= 0.5 and abs(ez) <= 0.5)",
    "always[0,0.5](tilt <= 1.0)",
)
DEFAULT_MARGIN = 0.15  # robustness units (m, rad)
DEFAULT_HOLDOFF_S = 0.2
DEFAULT_HORIZON_S = 0.5

NOMINAL, BACKUP = 0, 1
MODES = ("nominal", "backup")


@dataclass(frozen=True)
class ShieldConfig:
    specs: tuple[str, ...] = DEFAULT_SPECS
    margin: float | tuple[float, ...] = DEFAULT_MARGIN  # one value, or one per spec
    holdoff_s: float = DEFAULT_HOLDOFF_S
    horizon_s: float = DEFAULT_HORIZON_S
    samples: int = 1  # K predicted copies: the nominal one + K - 1 randomized ones
    # Predict with the force and torque the backup's observers estimate the model is missing (a
    # weak rotor, a mass error, wind): without them a 30 % weak rotor was predicted to be caught
    # by the policy, and the shield handed back too early (3.5 % of episodes violated).
    adaptive: bool = True
    # Start under the backup and hand over after the hold-off once the prediction is safe (Simplex
    # style): until the observers have seen the vehicle fly, the prediction does not know a weak
    # rotor, and a start already falling with one left the box once in 3,000 episodes. The
    # sabotage demonstration sets it (its episodes start mid-air); a flight that takes off under
    # the policy may leave it off.
    start_in_backup: bool = False
    seed: int = 0  # for the randomized copies
    dt: float = 0.01  # s, the control period the specs are sampled at

    def __post_init__(self):
        if not self.specs:
            raise ValueError("shield: specs: expected at least one STL spec, got none")
        m = self.margins
        if len(m) != len(self.specs):
            raise ValueError(f"shield: margin: expected one value or {len(self.specs)} (one per spec), got {len(m)}")
        if not all(math.isfinite(v) and v >= 0 for v in m):
            raise ValueError(f"shield: margin: expected finite values >= 0, got {self.margin!r}")
        if not (self.holdoff_s >= 0 and math.isfinite(self.holdoff_s)):
            raise ValueError(f"shield: holdoff_s: expected a finite value >= 0 s, got {self.holdoff_s!r}")
        if self.horizon_steps < 1:
            raise ValueError(f"shield: horizon_s: expected at least one period ({self.dt} s), got {self.horizon_s!r}")
        if int(self.samples) != self.samples or self.samples < 1:
            raise ValueError(f"shield: samples: expected an integer >= 1, got {self.samples!r}")

    @property
    def margins(self) -> tuple[float, ...]:
        m = self.margin
        return tuple(float(v) for v in m) if isinstance(m, (tuple, list)) else (float(m),) * len(self.specs)

    @property
    def horizon_steps(self) -> int:
        return int(round(self.horizon_s / self.dt))

    @property
    def holdoff_steps(self) -> int:
        return int(math.ceil(self.holdoff_s / self.dt - 1e-9))

    @classmethod
    def from_platform(cls, platform, **overrides) -> "ShieldConfig":
        """The platform's [safety] section where it has one, else the defaults above."""
        from edgectl.platforms import PlatformError

        def get(key, default):
            try:
                return platform.get(key)
            except PlatformError:  # a platform file without [safety]
                return default
        kw = dict(specs=tuple(get("safety.specs", DEFAULT_SPECS)), margin=get("safety.shield_margin", DEFAULT_MARGIN),
                  holdoff_s=get("safety.shield_holdoff", DEFAULT_HOLDOFF_S),
                  horizon_s=get("safety.shield_horizon", DEFAULT_HORIZON_S), dt=1.0 / platform.get("control.policy_rate"))
        kw.update(overrides)
        return cls(**kw)

    def formulas(self, kind: str = "quadrotor", allow_short: bool = False) -> list:
        from edgectl.safety.signals import SIGNALS_BY_KIND
        from edgectl.safety.stl import parse

        out = []
        for i, text in enumerate(self.specs):
            f = parse(text, SIGNALS_BY_KIND[kind])
            f.steps(self.dt)  # a bound off the sample grid is refused here, with its column
            if f.horizon > self.horizon_s + 1e-9 and not allow_short:
                raise ValueError(f"shield: specs[{i}] {text!r} looks {f.horizon:g} s ahead, beyond the "
                                 f"prediction horizon_s = {self.horizon_s:g} s")
            out.append(f)
        return out


@dataclass(frozen=True)
class SwitchEvent:
    t: float  # s since the shield started
    direction: str  # "to_backup" | "to_nominal"
    reason: str
    spec: int  # index into ShieldConfig.specs; -1 when the reason is not a spec (a NaN state)
    robustness: float  # predicted robustness of that spec (before the margin); nan if none

    def as_dict(self) -> dict:
        return {"t": self.t, "direction": self.direction, "reason": self.reason, "spec": self.spec,
                "robustness": self.robustness}


def reason_text(config: ShieldConfig, spec: int, rob: float, safe: bool) -> str:
    if spec < 0:
        return "prediction safe again" if safe else "state estimate not finite"
    cmp = ">=" if safe else "<"
    return (f"spec[{spec}] {config.specs[spec]!r}: predicted robustness {rob:.4g} {cmp} margin "
            f"{config.margins[spec]:g}")


# --- Numba kernels for the prediction: the observation, the bundle's MLP and the simulator in one
# loop. Through numpy, building the observation alone cost 80 us per predicted step (4 ms a tick
# at H = 50); fused it is about 1 us. Compiled on first use, so importing this module stays cheap.
_FIELD_CODES = {name: i for i, name in enumerate(_SUPPORTED_FIELDS)}
_KERNELS = None


def _kernels():
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS
    import numba as nb

    from edgectl.plant.quadrotor import step_into

    @nb.njit(cache=True)
    def obs_into(x, prev, integ, ref, codes, sizes, out):
        w, qx, qy, qz = x[3], x[4], x[5], x[6]
        j = 0
        for f in range(codes.shape[0]):
            c = codes[f]
            if c == 0:
                for i in range(3):
                    out[j + i] = x[i] - ref[i]
            elif c == 1:
                out[j + 0] = 1 - 2 * (qy * qy + qz * qz)
                out[j + 1] = 2 * (qx * qy - w * qz)
                out[j + 2] = 2 * (qx * qz + w * qy)
                out[j + 3] = 2 * (qx * qy + w * qz)
                out[j + 4] = 1 - 2 * (qx * qx + qz * qz)
                out[j + 5] = 2 * (qy * qz - w * qx)
                out[j + 6] = 2 * (qx * qz - w * qy)
                out[j + 7] = 2 * (qy * qz + w * qx)
                out[j + 8] = 1 - 2 * (qx * qx + qy * qy)
            elif c == 2:
                for i in range(3):
                    out[j + i] = x[7 + i]
            elif c == 3:
                for i in range(3):
                    out[j + i] = x[10 + i]
            elif c == 4:
                for i in range(sizes[f]):
                    out[j + i] = prev[i]
            elif c == 6:
                for i in range(3):
                    out[j + i] = integ[i]
            else:
                for i in range(sizes[f]):
                    out[j + i] = 0.0
            j += sizes[f]

    @nb.njit(cache=True)
    def predict_mlp(x0, prev0, integ0, ispec, params, ref, codes, sizes, offset, scale, weights, biases, relu, H, traj):
        K, n = x0.shape[0], offset.shape[0]
        pstride = 1 if params.shape[0] > 1 else 0
        obs = np.empty(n)
        width = 0
        for w in weights:
            width = max(width, w.shape[1])
        h_in = np.empty(max(width, n))
        h_out = np.empty(width)
        a = np.empty(4)
        for k in range(K):
            x = x0[k].copy()
            prev = prev0.copy()
            integ = integ0.copy()
            p = params[k * pstride]
            for i in range(13):
                traj[k, 0, i] = x[i]
            for t in range(H):
                obs_into(x, prev, integ, ref, codes, sizes, obs)
                m = n
                for i in range(n):
                    h_in[i] = (obs[i] - offset[i]) / scale[i]
                last = len(weights) - 1
                for li, W in enumerate(weights):
                    b = biases[li]
                    for o in range(W.shape[1]):
                        acc = b[o]
                        for i in range(m):
                            acc += h_in[i] * W[i, o]
                        if li < last:
                            acc = max(acc, 0.0) if relu else np.tanh(acc)
                        h_out[o] = acc
                    m = W.shape[1]
                    for o in range(m):
                        h_in[o] = h_out[o]
                for i in range(4):
                    a[i] = min(max(h_in[i], -1.0), 1.0)
                for i in range(prev.shape[0] - 1, 3, -1):
                    prev[i] = prev[i - 4]
                for i in range(min(4, prev.shape[0])):
                    prev[i] = a[i]
                step_into(x, a, p, x)
                for i in range(3):  # ispec = (decay, limit, dt); the next observation holds the new error
                    integ[i] = min(max(integ[i] * ispec[0] + (x[i] - ref[i]) * ispec[2], -ispec[1]), ispec[1])
                for i in range(13):
                    traj[k, t + 1, i] = x[i]

    @nb.njit(cache=True)
    def obs_batch(x, prev, integ, ref, codes, sizes, out):
        for k in range(x.shape[0]):
            obs_into(x[k], prev[k], integ[k], ref, codes, sizes, out[k])

    _KERNELS = {"obs_into": obs_into, "predict_mlp": predict_mlp, "obs_batch": obs_batch}
    return _KERNELS


def _layout(contract: dict) -> tuple[np.ndarray, np.ndarray]:
    fs = contract["observation"]["fields"]
    return (np.array([_FIELD_CODES[f["name"]] for f in fs], np.int64), np.array([f["size"] for f in fs], np.int64))


# --- the host-side shield ----------------------------------------------------------------------
def _finite_state(pos, quat, vel, omega) -> str | None:
    """None if the estimate is usable, else what is wrong with it (for the log)."""
    for name, v, n in (("pos", pos, 3), ("quat", quat, 4), ("vel", vel, 3), ("omega", omega, 3)):
        if v is None:
            return f"state estimate: {name} missing"
        a = np.asarray(v, np.float64)
        if a.shape != (n,):
            return f"state estimate: {name} has shape {list(a.shape)}, expected [{n}]"
        bad = np.flatnonzero(~np.isfinite(a))
        if len(bad):
            return f"state estimate not finite: {name}[{bad[0]}] = {a[bad[0]]}"
    if float(np.linalg.norm(np.asarray(quat, np.float64))) < 1e-6:
        return "state estimate: quat has zero norm"
    return None


class Shield:
    """One vehicle. ``policy(obs (K, size)) -> actions (K, 4)``; ``contract`` the bundle's; the
    Numba simulator with ``params`` (nominal, from the platform) predicts.

    ``step(pos, quat, vel, omega, ref_pos)`` returns the action to send and updates ``mode`` and
    ``log``. Time advances one ``config.dt`` per call.
    """

    def __init__(self, policy: Callable[[np.ndarray], np.ndarray], contract: dict, platform,
                 config: ShieldConfig | None = None, gains: bk.BackupGains | None = None, *, allow_short: bool = False):
        from edgectl.plant import quadrotor as nq  # numba, no JAX

        check_contract(contract)
        if contract["action"]["mapping"].get("kind") == "ctbr":
            raise ValueError("shield: a ctbr bundle commands body rates through the autopilot's rate loop, which the "
                             "shield's motor-level prediction does not model; fly it without --shield (the autopilot's own "
                             "failsafes and edgectl's ctbr backup stay)")
        self.policy, self.contract, self.nq = policy, contract, nq
        self.codes, self.sizes = _layout(contract)
        self.kern = _kernels()
        # A bundle's float MLP is evaluated inside the Numba prediction loop; any other policy
        # (ONNX, compiled C) is called once per predicted step.
        self.mlp = None
        owner = getattr(policy, "__self__", None)
        if getattr(policy, "__name__", "") == "act" and hasattr(owner, "layers") and hasattr(owner, "manifest"):
            norm = contract["observation"]["normalization"]
            self.mlp = (np.asarray(norm["offset"], np.float64), np.asarray(norm["scale"], np.float64),
                        tuple(np.ascontiguousarray(w, np.float64) for w, _ in owner.layers),
                        tuple(np.ascontiguousarray(b, np.float64) for _, b in owner.layers),
                        owner.manifest["policy"]["activation"] == "relu")
        self.config = config or ShieldConfig.from_platform(platform)
        # allow_short: only for timing at horizons shorter than the specs' (shield_cost).
        self.formulas = self.config.formulas(platform.kind, allow_short=allow_short)
        self.history = sum(f["size"] for f in contract["observation"]["fields"] if f["name"] == "previous_actions") // 4
        from edgectl.contract import integral_jump, integral_spec
        self.ispec = integral_spec(contract)  # None: no position_error_integral field
        self.ijump = integral_jump(contract)
        self.params = nq.params_from_platform(platform)
        idx = {name: i for i, name in enumerate(nq.PARAM_NAMES)}
        self.p_mass = idx["mass"]
        self.p_force = slice(idx["force_x"], idx["force_x"] + 3)
        self.p_torque = slice(idx["torque_x"], idx["torque_x"] + 3)
        self.p_inertia = slice(idx["inertia_x"], idx["inertia_x"] + 3)
        if self.config.samples > 1:
            self.params = np.concatenate([self.params[None], _random_params(platform, self.config.samples - 1,
                                                                            self.config.seed)])
        self.backup = bk.BackupController(platform, gains)
        self.backup.engage(np.zeros(3))
        self.hover_action = self.backup.model.hover_action
        self.reset()

    def reset(self) -> None:
        self.mode = BACKUP if self.config.start_in_backup else NOMINAL
        self.tick, self.switch_tick = 0, 0 if self.mode == BACKUP else -10**9
        self.log: list[SwitchEvent] = []
        self.prev = np.full(4 * self.history, self.hover_action)
        self.integral = np.zeros(3)
        self._iref = None  # the last period's reference, for the integral rule
        self.backup.engage(np.zeros(3))
        self.last_robustness = np.full(len(self.formulas), np.nan)

    @property
    def t(self) -> float:
        return self.tick * self.config.dt

    def predict(self, pos, quat, vel, omega, ref_pos) -> np.ndarray:
        """Per-spec robustness (before margins) of the predicted trace, the worst over the K copies."""
        from edgectl.safety.signals import signals_from_state

        H, K = self.config.horizon_steps, self.config.samples
        x = np.empty((K, self.nq.STATE_SIZE))
        x[:, 0:3], x[:, 3:7], x[:, 7:10], x[:, 10:13] = pos, np.asarray(quat) / np.linalg.norm(quat), vel, omega
        x[:, 13:17] = self.backup.state["motor"]
        params = np.array(np.atleast_2d(self.params))
        if self.config.adaptive:
            st = self.backup.state
            params[:, self.p_force] += params[:, self.p_mass, None] * st["fdist"]
            params[:, self.p_torque] += params[:, self.p_inertia] * st["dist"]
        traj = np.empty((K, H + 1, 13))
        ref = np.asarray(ref_pos, np.float64)
        ispec = np.array(self.ispec if self.ispec is not None else (1.0, np.inf, 0.0))
        if self.mlp is not None:
            off, scale, ws, bs, relu = self.mlp
            self.kern["predict_mlp"](x, self.prev, self.integral, ispec, params, ref, self.codes, self.sizes, off, scale,
                                     ws, bs, relu, H, traj)
        else:
            traj[:, 0] = x[:, :13]
            prev = np.broadcast_to(self.prev, (K, self.prev.size)).copy()
            integ = np.broadcast_to(self.integral, (K, 3)).copy()
            obs = np.empty((K, int(self.sizes.sum())))
            for h in range(H):
                self.kern["obs_batch"](x, prev, integ, ref, self.codes, self.sizes, obs)
                a = np.clip(np.asarray(self.policy(obs), np.float64).reshape(K, 4), -1.0, 1.0)
                if self.history:
                    prev = np.concatenate([a, prev[:, :-4]], axis=1)
                self.nq.step_batch(x, a, params, x)
                integ = np.clip(integ * ispec[0] + (x[:, :3] - ref) * ispec[2], -ispec[1], ispec[1])
                traj[:, h + 1] = x[:, :13]
        sig = signals_from_state(traj[..., 0:3], traj[..., 3:7], traj[..., 7:10], traj[..., 10:13], np.asarray(ref_pos)[None, None])
        rob = np.array([np.min(f.robustness(sig, self.config.dt)[..., 0]) for f in self.formulas])
        return rob

    def step(self, pos, quat, vel, omega, ref_pos=(0.0, 0.0, 0.0)) -> np.ndarray:
        cfg = self.config
        bad = _finite_state(pos, quat, vel, omega)
        if self.ispec is not None and bad is None:  # contract rule: 0 in the first period of a reference
            from edgectl.contract import integral_update, same_reference
            iref, self._iref = self._iref, np.float32(ref_pos).copy()
            if self.tick > 0 and (iref is None or same_reference(iref, ref_pos, self.ijump)):
                self.integral = integral_update(self.integral, np.asarray(pos, np.float64) - np.asarray(ref_pos, np.float64),
                                                self.ispec)
            else:
                self.integral = np.zeros(3)
        if self.tick == 0 and self.mode == BACKUP:  # started under the backup: engage it where we are
            self.backup.engage(np.zeros(3) if bad else np.asarray(pos, np.float64), target=np.asarray(ref_pos, np.float64))
        if bad is None:
            rob = self.predict(pos, quat, vel, omega, ref_pos)
            slack = rob - np.asarray(cfg.margins)
            worst = int(np.argmin(slack))
            safe = bool(slack[worst] >= 0.0)  # NaN compares False: unsafe
        else:
            rob, worst, safe = np.full(len(self.formulas), np.nan), -1, False
        self.last_robustness = rob
        if self.mode == NOMINAL and not safe:
            self._switch(BACKUP, worst, rob, bad)
            self.backup.engage(np.nan_to_num(np.asarray(pos, np.float64)) if bad is None else np.zeros(3),
                               target=np.asarray(ref_pos, np.float64))
        elif self.mode == BACKUP and safe and self.tick - self.switch_tick >= cfg.holdoff_steps:
            self._switch(NOMINAL, worst, rob, None)

        if self.mode == NOMINAL:
            obs = observation(self.contract, pos, quat, vel, omega, self.prev, ref_pos, integral=self.integral)
            a = np.clip(np.asarray(self.policy(obs[None]), np.float64).reshape(4), -1.0, 1.0)
            self.backup.observe(quat, vel, omega, a)
        else:
            # A missing or NaN estimate reaches the backup as NaN: it then sends the open-loop hover command.
            args = (pos, quat, vel, omega) if bad is None else (np.full(3, np.nan), np.full(4, np.nan), np.full(3, np.nan), np.full(3, np.nan))
            a = self.backup(*args)
        if self.history:
            self.prev = np.concatenate([a, self.prev[:-4]])
        self.tick += 1
        return a

    def _switch(self, mode: int, spec: int, rob, bad: str | None) -> None:
        r = float(rob[spec]) if spec >= 0 else float("nan")
        reason = bad if bad is not None else reason_text(self.config, spec, r, safe=(mode == NOMINAL))
        self.log.append(SwitchEvent(t=self.t, direction="to_" + MODES[mode], reason=reason, spec=spec, robustness=r))
        self.mode, self.switch_tick = mode, self.tick


def _random_params(platform, n: int, seed: int) -> np.ndarray:
    """n randomized vehicles (the platform's randomization ranges and disturbances), numpy only."""
    from edgectl.plant import quadrotor as nq

    rng = np.random.default_rng(seed)
    base = nq.params_as_dict(nq.params_from_platform(platform))
    keys = ("mass", "inertia", "thrust_curve", "torque_coefficient", "motor_time_constant", "drag_coefficient")
    fields_ = ("mass", "inertia", "thrust_max", "torque_coefficient", ("motor_tau", "motor_tau_down"), "drag")
    out = []
    for _ in range(n):
        d = {k: np.array(v, np.float64) for k, v in base.items()}
        for key, fld in zip(keys, fields_):
            lo, hi = platform.get(f"randomization.{key}")  # factor range, drawn log-uniform as in training
            f = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            for name in (fld if isinstance(fld, tuple) else (fld,)):
                d[name] = d[name] * f
        d["force"] = platform.get("disturbance.force_std") * rng.standard_normal(3)
        d["torque"] = platform.get("disturbance.torque_std") * rng.standard_normal(3)
        out.append(nq.params_to_array(d))
    return np.stack(out)


def shield_cost(H: int = 50, ticks: int = 200, bundle=None, platform=None, samples: int = 1) -> float:
    """Seconds per tick of the host shield at a prediction horizon of H steps (median over
    ``ticks`` ticks of a hover flight, after a warm-up that compiles the Numba kernels).
    Defaults: the test fixture's hover bundle and its platform file."""
    from pathlib import Path

    from edgectl.bundle import load_bundle
    from edgectl.platforms import load_platform

    if bundle is None:
        bundle = load_bundle(Path(__file__).resolve().parents[2] / "tests" / "data" / "hover_bundle")
    if platform is None:
        platform = load_platform(bundle.platform_name)
    base = ShieldConfig.from_platform(platform)
    dt = base.dt
    cfg = ShieldConfig(specs=base.specs, margin=base.margin, holdoff_s=base.holdoff_s, horizon_s=H * dt,
                       samples=samples, dt=dt)
    sh = Shield(bundle.act, bundle.contract, platform, cfg, allow_short=True)
    from edgectl.plant import quadrotor as nq

    p = nq.params_from_platform(platform)
    x = nq.hover_state(p)
    x[0:3] = (0.05, -0.03, 0.02)
    times = []
    for i in range(ticks + 5):
        t0 = time.perf_counter()
        a = sh.step(x[0:3], x[3:7], x[7:10], x[10:13])
        dt_tick = time.perf_counter() - t0
        if i >= 5:
            times.append(dt_tick)
        nq.step_into(x, a, p, x)
    return float(np.median(times))


__all__ = ["DEFAULT_SPECS", "ShieldConfig", "Shield", "SwitchEvent", "observation", "shield_cost", "MODES",
           "NOMINAL", "BACKUP"]
