"""The tasks as environments other people's algorithms can train on: a gymnax-style `Environment` and gymnasium
`GymEnv` (one vehicle) and `VectorEnv` (a jitted, batched, autoresetting batch of them).

They wrap the same pure functions edgectl's own trainer uses (train_fast/tasks/*: `reset`, `step`, `observe`,
`observe_privileged`), so a policy trained through them sees exactly what `edgectl train`'s policies see:

- observation: the bundle contract's **normalized** observation, `(observe(...) - offset) / scale` with the
  contract's per-element offset and scale, sensor noise included; float32, shape (contract observation.size,),
  fields in contract order (`Environment.contract["observation"]["fields"]`). A policy trained on it becomes a
  bundle whose contract is that one (`edgectl import`): the bundle normalizes raw observations the same way.
- action: the contract's action, float32 in [action.low, action.high] (the task clips it there);
- critic observation (asymmetric actor-critic): the task's privileged, noise-free state (motor speeds,
  disturbance, randomized parameters, episode time), already normalized; gymnax `info["critic_observation"]`,
  gymnasium `info["critic_observation"]` (per env in a VectorEnv), and skrl's `state()` / `state_space`;
- episodes end on the task's termination, or are truncated at `params.max_steps_in_episode` (the task's
  episode length by default);
- domain randomization: every reset draws a new vehicle from the platform's [randomization] ranges, with the
  training start distribution (`randomize=True, training=True`, what `edgectl train` trains on); pass
  `randomize=False, training=False` for the nominal vehicle and the evaluation starts.

Registered gymnasium ids (on `import edgectl`, see edgectl/gym_ids.py): edgectl/Hover-v0, edgectl/Figure8-v0,
edgectl/Race-v0, edgectl/Avoid-v0; `gymnasium.make(id, platform=..., randomize=..., **task_overrides)` and
`gymnasium.make_vec(id, num_envs=N)` (the jitted VectorEnv, autoreset mode SAME_STEP: a finished env's
observation is already the next episode's, its last one is in info["final_obs"]).

gymnax compatibility: with gymnax installed, `Environment` subclasses `gymnax.environments.environment.Environment`
and its spaces are gymnax spaces; the API is gymnax 1.x's: `reset(key, params) -> (obs, state)`,
`step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)` with autoreset,
`reset_env` / `step_env` without it, `observation_space(params)`, `action_space(params)`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:  # gymnax is optional: without it the same API, on a plain base class
    from gymnax.environments import spaces as _gx_spaces
    from gymnax.environments.environment import Environment as _Base
except ImportError:  # pragma: no cover - exercised where gymnax is absent
    _gx_spaces, _Base = None, object


@partial(jax.tree_util.register_dataclass, data_fields=["max_steps_in_episode"], meta_fields=[])
@dataclass(frozen=True)
class EnvParams:
    """The traced environment parameters (gymnax convention). The vehicle, the task and its randomization are
    fixed when the Environment is made: they shape the computation (field sets, branches), so they are static."""
    max_steps_in_episode: Any


class Box:
    """gymnax.environments.spaces.Box's interface, for when gymnax is not installed."""

    def __init__(self, low, high, shape, dtype=jnp.float32):
        self.low, self.high, self.shape, self.dtype = low, high, shape, dtype

    def sample(self, key):
        return jax.random.uniform(key, self.shape, minval=self.low, maxval=self.high).astype(self.dtype)

    def contains(self, x):
        return jnp.logical_and(jnp.all(x >= self.low), jnp.all(x <= self.high))


def _box(low, high, shape):
    return (_gx_spaces.Box if _gx_spaces is not None else Box)(low, high, shape, jnp.float32)


def build_task(task: str, platform=None, *, randomize: bool = True, training: bool = True, disturbances: bool = True,
               track: str | None = None, **task_overrides):
    """(task module, static env, contract, platform) for a task name, as `edgectl train` builds them.

    ``platform``: a name, a .toml path or a loaded Platform (default: the task's usual vehicle). ``task_overrides``
    are TaskConfig fields (e.g. action_history=1, episode_seconds=2.0)."""
    from edgectl.platforms import Platform, load_platform
    from edgectl.tasks import DEFAULT_PLATFORM, task as registered

    entry = registered(task)
    plat = platform if isinstance(platform, Platform) else load_platform(platform or DEFAULT_PLATFORM[entry.vehicle])
    if plat.kind != entry.platform_kind:
        raise ValueError(f"{plat.path}: platform {plat.name!r} is a {plat.kind}; the {task} task needs a "
                         f"{entry.platform_kind} platform")
    mod, env, cfg = entry.hook("gym_env")(task, plat, randomize=randomize, training=training,
                                          disturbances=disturbances, track=track, **task_overrides)
    return mod, env, mod.contract(cfg, plat), plat


class Environment(_Base):
    """A gymnax-style environment over one task's pure functions (see the module docstring).

    Two Environments made with the same arguments compare equal and hash alike, so jitted functions that take
    one as a static argument (gymnax's `step` / `reset`) compile once for both."""

    def __init__(self, task: str = "hover", platform=None, **kwargs):
        """``kwargs``: build_task's (randomize, training, disturbances, track) and TaskConfig fields."""
        self.task = task
        opts = {"randomize": True, "training": True, "disturbances": True, **kwargs}
        self._mod, self.env, self.contract, self.platform = build_task(task, platform, **opts)
        self.obs_size = int(self.contract["observation"]["size"])
        self.action_size = int(self.contract["action"]["size"])
        self.action_low = float(self.contract["action"]["low"])
        self.action_high = float(self.contract["action"]["high"])
        self.critic_size = int(self.env.critic_size)
        self._offset = np.asarray(self.env.obs_offset, np.float32)
        self._scale = np.asarray(self.env.obs_scale, np.float32)
        self._key = (task, hashlib.sha256(self.platform.raw).hexdigest(), tuple(sorted((k, repr(v)) for k, v in opts.items())))

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return type(other) is type(self) and other._key == self._key

    # --- gymnax API ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return gym_id(self.task)

    @property
    def num_actions(self) -> int:
        return self.action_size

    @property
    def default_params(self) -> EnvParams:
        return EnvParams(max_steps_in_episode=int(self.env.episode_steps))

    def observation_space(self, params: EnvParams | None = None):
        return _box(-jnp.inf, jnp.inf, (self.obs_size,))

    def action_space(self, params: EnvParams | None = None):
        return _box(self.action_low, self.action_high, (self.action_size,))

    def critic_observation_space(self, params: EnvParams | None = None):
        return _box(-jnp.inf, jnp.inf, (self.critic_size,))

    def observe(self, key, state, action=None, params=None):
        """The normalized actor observation of a state (sensor noise drawn with ``key``)."""
        raw = self._mod.observe(key, self.env, state)
        return ((raw - self._offset) / self._scale).astype(jnp.float32)

    def get_obs(self, state, params=None, key=None):
        return self.observe(jax.random.PRNGKey(0) if key is None else key, state, None, params)

    def critic_observation(self, state) -> jax.Array:
        return self._mod.observe_privileged(self.env, state).astype(jnp.float32)

    def is_truncated(self, state, params: EnvParams):
        return state.t >= params.max_steps_in_episode

    def reset_env(self, key, params: EnvParams):
        k_reset, k_obs = jax.random.split(key)
        state = self._mod.reset(k_reset, self.env)
        return self.observe(k_obs, state), state

    def step_env(self, key, state, action, params: EnvParams):
        """One control period without autoreset: (obs, state, reward, terminated, info)."""
        k_step, k_obs = jax.random.split(key)
        action = jnp.asarray(action, jnp.float32).reshape(self.action_size)
        s2, reward, terminated, _ = self._mod.step(k_step, state, action, self.env)
        info = {"critic_observation": self.critic_observation(s2),
                "discount": jnp.where(terminated, 0.0, 1.0).astype(jnp.float32)}
        return self.observe(k_obs, s2), s2, reward.astype(jnp.float32), terminated, info

    @partial(jax.jit, static_argnames=("self",))
    def reset(self, key, params: EnvParams | None = None):
        return self.reset_env(key, self.default_params if params is None else params)

    @partial(jax.jit, static_argnames=("self",))
    def step(self, key, state, action, params: EnvParams | None = None):
        return self.autoreset_step(key, state, action, params)

    def autoreset_step(self, key, state, action, params: EnvParams | None = None):
        """gymnax 1.x step with autoreset: a finished episode's returned observation and state are the next
        episode's; its last observation is info["final_observation"] (its critic's, info["final_critic_observation"])."""
        params = self.default_params if params is None else params
        k_step, k_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, info = self.step_env(k_step, state, action, params)
        truncated = self.is_truncated(state_st, params)
        done = terminated | truncated
        obs_re, state_re = self.reset_env(k_reset, params)
        state = jax.tree_util.tree_map(lambda r, s: jax.lax.select(done, r, s), state_re, state_st)
        obs = jax.lax.select(done, obs_re, obs_st)
        info = {**info, "critic_observation": self.critic_observation(state),
                "final_observation": obs_st, "final_critic_observation": info["critic_observation"],
                "terminated": terminated, "truncated": truncated}
        return obs, state, reward, terminated, truncated, info


# --- gymnasium ---------------------------------------------------------------------------------
def gym_id(task: str) -> str:
    from edgectl.tasks import task as registered

    return registered(task).gym_id


def _gymnasium():
    try:
        import gymnasium
    except ImportError:
        raise ImportError('the gymnasium interface needs gymnasium: pip install "edgectl[gym]"') from None
    return gymnasium


@partial(jax.jit, static_argnums=0)
def _reset_one(env: Environment, key, params):
    obs, state = env.reset_env(key, params)
    return obs, state, env.critic_observation(state)


@partial(jax.jit, static_argnums=0)
def _step_one(env: Environment, key, state, action, params):
    obs, s2, reward, terminated, info = env.step_env(key, state, action, params)
    return obs, s2, reward, terminated, env.is_truncated(s2, params), info["critic_observation"]


@partial(jax.jit, static_argnums=0)
def _reset_many(env: Environment, keys, params):
    obs, state = jax.vmap(env.reset_env, in_axes=(0, None))(keys, params)
    return obs, state, jax.vmap(env.critic_observation)(state)


@partial(jax.jit, static_argnums=0)
def _step_many(env: Environment, key, state, actions, params):
    keys = jax.random.split(key, actions.shape[0])
    return jax.vmap(env.autoreset_step, in_axes=(0, 0, 0, None))(keys, state, actions, params)


def _seed_key(seed, np_random) -> jax.Array:
    if seed is None:
        seed = int(np_random.integers(0, 2**31 - 1))
    return jax.random.PRNGKey(int(seed))


def _make_spaces(gx: Environment):
    gymnasium = _gymnasium()
    Box_ = gymnasium.spaces.Box
    obs = Box_(-np.inf, np.inf, (gx.obs_size,), np.float32)
    act = Box_(gx.action_low, gx.action_high, (gx.action_size,), np.float32)
    critic = Box_(-np.inf, np.inf, (gx.critic_size,), np.float32)
    return obs, act, critic


def _gym_base():
    return _gymnasium().Env


class GymEnv(_gym_base()):
    """One vehicle through gymnasium's `Env` API (no autoreset: call reset after terminated or truncated).
    `info["critic_observation"]`: the privileged critic input of the returned state."""

    metadata = {"render_modes": []}

    def __init__(self, task: str = "hover", platform=None, render_mode=None, **kwargs):
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r}: edgectl environments do not render (plot with edgectl eval)")
        self.gx = Environment(task, platform, **kwargs)
        self.params = self.gx.default_params
        self.observation_space, self.action_space, self.critic_observation_space = _make_spaces(self.gx)
        self.contract = self.gx.contract
        self._key, self._state = None, None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._key is None:
            self._key = _seed_key(seed, self.np_random)
        self._key, k = jax.random.split(self._key)
        obs, self._state, critic = _reset_one(self.gx, k, self.params)
        return np.asarray(obs), {"critic_observation": np.asarray(critic)}

    def step(self, action):
        if self._state is None:
            raise RuntimeError("step() before reset()")
        a = np.asarray(action, np.float32).reshape(self.gx.action_size)
        self._key, k = jax.random.split(self._key)
        obs, self._state, reward, term, trunc, critic = _step_one(self.gx, k, self._state, a, self.params)
        return np.asarray(obs), float(reward), bool(term), bool(trunc), {"critic_observation": np.asarray(critic)}


def _vector_base():
    return _gymnasium().vector.VectorEnv


class VectorEnv(_vector_base()):
    """`num_envs` vehicles stepped together by one jitted, vmapped call, with autoreset mode SAME_STEP.

    step() returns the batch (obs (N, obs_size) float32, reward (N,), terminated (N,), truncated (N,), info):
    info["critic_observation"] (N, critic_size) for the returned observations; where an episode ended,
    info["final_obs"][i] is its last observation and info["final_info"]["critic_observation"][i] its critic's
    (masks "_final_obs", "_final_info"), as gymnasium's SyncVectorEnv reports them. skrl reads the critic
    observation through `state()` / `state_space`."""

    def __init__(self, num_envs: int = 1, task: str = "hover", platform=None, render_mode=None, **kwargs):
        from gymnasium.vector import AutoresetMode
        from gymnasium.vector.utils import batch_space

        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r}: edgectl environments do not render")
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs: expected a positive int, got {num_envs!r}")
        self.num_envs = num_envs
        self.gx = Environment(task, platform, **kwargs)
        self.params = self.gx.default_params
        self.contract = self.gx.contract
        self.metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}
        self.render_mode = None
        self.single_observation_space, self.single_action_space, self.state_space = _make_spaces(self.gx)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._key, self._state, self._critic = None, None, None
        self._all = np.ones(num_envs, bool)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if isinstance(seed, (list, tuple)):
            if len(seed) != self.num_envs:
                raise ValueError(f"seed: expected {self.num_envs} seeds (num_envs), got {len(seed)}")
            keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seed])
            self._key = jax.random.fold_in(keys[0], 1)
            super().reset(seed=int(seed[0]))
        else:
            super().reset(seed=seed)
            if seed is not None or self._key is None:
                self._key = _seed_key(seed, self.np_random)
            self._key, k = jax.random.split(self._key)
            keys = jax.random.split(k, self.num_envs)
        obs, self._state, self._critic = _reset_many(self.gx, keys, self.params)
        return np.asarray(obs), {"critic_observation": np.asarray(self._critic), "_critic_observation": self._all}

    def step(self, actions):
        if self._state is None:
            raise RuntimeError("step() before reset()")
        a = np.asarray(actions, np.float32).reshape(self.num_envs, self.gx.action_size)
        self._key, k = jax.random.split(self._key)
        obs, self._state, reward, term, trunc, info = _step_many(self.gx, k, self._state, a, self.params)
        obs, reward, term, trunc, info = jax.device_get((obs, reward, term, trunc, info))
        self._critic = info["critic_observation"]
        infos: dict[str, Any] = {"critic_observation": self._critic, "_critic_observation": self._all}
        done = np.asarray(term | trunc)
        if done.any():
            final = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                final[i] = info["final_observation"][i]
            infos["final_obs"], infos["_final_obs"] = final, done
            infos["final_info"] = {"critic_observation": info["final_critic_observation"], "_critic_observation": done}
            infos["_final_info"] = done
        return obs, reward.astype(np.float64), term.astype(bool), trunc.astype(bool), infos

    def state(self) -> np.ndarray:
        """The critic observation of the current batch (skrl's asymmetric actor-critic hook)."""
        return np.asarray(self._critic)


def make(task: str = "hover", **kwargs) -> GymEnv:
    return GymEnv(task, **kwargs)


def make_vec(task: str = "hover", num_envs: int = 1, **kwargs) -> VectorEnv:
    return VectorEnv(num_envs, task, **kwargs)
