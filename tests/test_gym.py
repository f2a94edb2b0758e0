"""The tasks as gymnax / gymnasium environments (train_fast/envs.py): registered ids, gymnasium's own env
checker, spaces against the contract, determinism for a seed, SAME_STEP autoreset with the critic observation
in info, and a short training by an outside PPO (skrl's, JAX backend) through the gymnasium vector interface.

JIT compiles dominate this file's time: it uses the CLI's persistent compilation cache (~/.cache/edgectl/jax),
and every test uses the same environment arguments so that jitted functions are shared (Environment objects
with equal arguments compare equal)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")  # the [test] extra installs it: CI's skip audit fails on this skip

from train_fast.train import _setup_jax  # noqa: E402

jax = _setup_jax()

import edgectl  # noqa: E402,F401  (registers the ids)
from train_fast import envs  # noqa: E402
from train_fast.tasks import car_tasks as ct  # noqa: E402
from train_fast.tasks import quadrotor_tasks as qt  # noqa: E402

N = 16  # the vector tests and the training share one batch size, so one compile


def test_ids_registered_on_import_edgectl_without_importing_gymnasium_or_jax():
    code = ("import sys, edgectl; assert 'gymnasium' not in sys.modules and 'jax' not in sys.modules; "
            "import gymnasium, json; ids = sorted(k for k in gymnasium.registry if k.startswith('edgectl/')); "
            "assert 'jax' not in sys.modules; spec = gymnasium.spec('edgectl/Hover-v0'); "
            "print(json.dumps([ids, spec.entry_point, spec.vector_entry_point]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ids, entry, vector_entry = json.loads(out.stdout.strip().splitlines()[-1])
    assert ids == ["edgectl/Avoid-v0", "edgectl/Figure8-v0", "edgectl/Hover-v0", "edgectl/Race-v0"]
    assert entry == "train_fast.envs:GymEnv" and vector_entry == "train_fast.envs:VectorEnv"
    # gymnasium imported first, then edgectl: registered at once
    code2 = "import gymnasium, edgectl; print(sorted(k for k in gymnasium.registry if k.startswith('edgectl/')))"
    out2 = subprocess.run([sys.executable, "-c", code2], capture_output=True, text=True, timeout=120)
    assert out2.returncode == 0 and "edgectl/Race-v0" in out2.stdout, out2.stderr


@pytest.mark.parametrize("task", ["hover", "figure8", "race", "avoid"])
def test_spaces_match_the_contract(task):
    env = gymnasium.make(envs.gym_id(task), disable_env_checker=True).unwrapped
    c = env.contract
    assert env.observation_space.shape == (c["observation"]["size"],)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.shape == (c["action"]["size"],)
    assert float(env.action_space.low.min()) == c["action"]["low"] and float(env.action_space.high.max()) == c["action"]["high"]
    assert sum(f["size"] for f in c["observation"]["fields"]) == env.observation_space.shape[0]
    gx = env.gx
    assert gx.observation_space(gx.default_params).shape == (c["observation"]["size"],)
    assert gx.action_space(gx.default_params).shape == (c["action"]["size"],)
    assert env.critic_observation_space.shape == (gx.env.critic_size,)
    assert gx.default_params.max_steps_in_episode == gx.env.episode_steps
    # the contract is the one edgectl train writes into a bundle for the same task
    if task in ("hover", "figure8"):
        assert c == qt.contract(qt.TASKS[task](), gx.platform)
    elif task == "race":
        assert c == ct.contract(ct.TaskConfig(track="oval"), gx.platform)
    venv = gymnasium.make_vec(envs.gym_id(task), num_envs=3)
    assert isinstance(venv, envs.VectorEnv)
    assert venv.observation_space.shape == (3, c["observation"]["size"]) and venv.action_space.shape == (3, c["action"]["size"])


def test_gymnasium_env_checker_passes():
    from gymnasium.utils.env_checker import check_env

    env = gymnasium.make("edgectl/Hover-v0")
    check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["figure8", "race", "avoid"])
def test_every_other_task_passes_the_env_checker_and_steps_as_a_vector(task):
    """About a minute each on a cold compilation cache (2 cores), seconds warm."""
    from gymnasium.utils.env_checker import check_env

    check_env(gymnasium.make(envs.gym_id(task)).unwrapped, skip_render_check=True)
    venv = gymnasium.make_vec(envs.gym_id(task), num_envs=4)
    obs, info = venv.reset(seed=0)
    for _ in range(3):
        obs, rew, term, trunc, info = venv.step(venv.action_space.sample())
    assert obs.shape == (4, venv.single_observation_space.shape[0]) and np.all(np.isfinite(obs))
    assert info["critic_observation"].shape == (4, venv.state_space.shape[0]) and np.all(np.isfinite(rew))


def test_observation_is_the_normalized_contract_observation_and_seeded_runs_repeat():
    env = envs.GymEnv("hover")
    obs, info = env.reset(seed=7)
    c = env.contract
    raw = obs * np.asarray(c["observation"]["normalization"]["scale"]) + np.asarray(c["observation"]["normalization"]["offset"])
    # rotation_matrix (scale 1) is a rotation; previous_actions start at the hover action
    sl = {f["name"]: f for f in c["observation"]["fields"]}
    start = sum(f["size"] for f in c["observation"]["fields"][:list(sl).index("rotation_matrix")])
    R = raw[start:start + 9].reshape(3, 3)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=0.05)  # sensor noise on the elements
    assert info["critic_observation"].shape == env.critic_observation_space.shape

    def run(seed):
        e = envs.GymEnv("hover")
        o, _ = e.reset(seed=seed)
        traj = [o]
        rng = np.random.default_rng(0)
        for _ in range(20):
            o, r, term, trunc, inf = e.step(rng.uniform(-1, 1, 4).astype(np.float32))
            traj.append(np.concatenate([o, [r, term], inf["critic_observation"]]))
            if term or trunc:
                o, _ = e.reset()
        return np.concatenate(traj)

    a, b, other = run(3), run(3), run(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, other)


def test_vector_env_autoresets_same_step_with_the_critic_observation_in_info():
    venv = gymnasium.make_vec("edgectl/Hover-v0", num_envs=N)
    from gymnasium.vector import AutoresetMode

    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, info = venv.reset(seed=1)
    obs2, _ = gymnasium.make_vec("edgectl/Hover-v0", num_envs=N).reset(seed=1)
    np.testing.assert_array_equal(obs, obs2)
    assert obs.shape == (N, venv.single_observation_space.shape[0]) and obs.dtype == np.float32
    assert info["critic_observation"].shape == (N, venv.state_space.shape[0])
    venv.params = envs.EnvParams(max_steps_in_episode=3)  # traced: no recompile
    hover = venv.contract["action"]["hover_action"]
    for _ in range(3):
        obs_i, rew, term, trunc, info = venv.step(np.full((N, 4), hover, np.float32))
        assert rew.shape == (N,) and np.all(np.isfinite(rew))
        np.testing.assert_array_equal(venv.state(), info["critic_observation"])
    assert np.all(trunc | term)  # every episode ended at step 3 ...
    assert info["_final_obs"].all() and info["final_info"]["critic_observation"].shape == (N, venv.state_space.shape[0])
    final = np.stack(info["final_obs"])
    assert final.shape == obs.shape and not np.allclose(final, obs_i)  # ... and obs is already the next episode's
    _, _, term, trunc, info = venv.step(np.full((N, 4), hover, np.float32))
    assert not (term | trunc).any() and "final_obs" not in info


def test_gymnax_api():
    gx = envs.Environment("hover")
    gymnax = pytest.importorskip("gymnax")
    assert isinstance(gx, gymnax.environments.environment.Environment)
    params = gx.default_params
    keys = jax.random.split(jax.random.PRNGKey(0), N)
    obs, state = jax.vmap(gx.reset, in_axes=(0, None))(keys, params)
    assert obs.shape == (N, gx.obs_size)
    a = jax.vmap(gx.action_space(params).sample)(keys)
    assert a.shape == (N, gx.action_size) and bool(jax.vmap(gx.action_space(params).contains)(a).all())
    obs, state, reward, term, trunc, info = jax.vmap(gx.step, in_axes=(0, 0, 0, None))(keys, state, a, params)
    assert obs.shape == (N, gx.obs_size) and reward.shape == (N,) and term.dtype == bool
    assert info["critic_observation"].shape == (N, gx.critic_size)
    assert info["final_observation"].shape == (N, gx.obs_size)


def skrl_ppo(venv, timesteps: int, seed: int = 0, hidden: int = 32, agent=None, cfg_overrides: dict | None = None,
             action_bias: float = 0.0):
    """skrl's PPO (JAX backend) through the gymnasium vector interface: actor on the observation, critic on the
    privileged state (skrl's asymmetric `state()`). Returns the trained agent (pass it back to train on)."""
    import flax.linen as nn
    import jax.numpy as jnp
    from skrl import config
    config.jax.backend = "jax"
    config.jax.key = seed
    from skrl.agents.jax.ppo import PPO, PPO_CFG
    from skrl.envs.wrappers.jax import wrap_env
    from skrl.memories.jax import RandomMemory
    from skrl.models.jax import DeterministicMixin, GaussianMixin, Model
    from skrl.trainers.jax import SequentialTrainer

    class Policy(GaussianMixin, Model):
        def __init__(self, observation_space, state_space, action_space, device=None, **kw):
            Model.__init__(self, observation_space=observation_space, state_space=state_space,
                           action_space=action_space, device=device, **kw)
            GaussianMixin.__init__(self, clip_actions=True, clip_log_std=True, min_log_std=-5.0, max_log_std=1.0)

        @nn.compact
        def __call__(self, inputs, role=""):
            x = nn.tanh(nn.Dense(hidden)(inputs["observations"]))
            x = nn.tanh(nn.Dense(hidden)(x))
            # the output starts near action_bias (for hover: the hover command), as edgectl's own PPO starts
            out = nn.Dense(self.num_actions, kernel_init=nn.initializers.normal(0.01),
                           bias_init=nn.initializers.constant(action_bias))(x)
            return out, {"log_std": self.param("log_std", lambda _: jnp.full(self.num_actions, -0.7))}

    class Value(DeterministicMixin, Model):
        def __init__(self, observation_space, state_space, action_space, device=None, **kw):
            Model.__init__(self, observation_space=observation_space, state_space=state_space,
                           action_space=action_space, device=device, **kw)
            DeterministicMixin.__init__(self)

        @nn.compact
        def __call__(self, inputs, role=""):
            x = nn.tanh(nn.Dense(64)(inputs["states"]))
            return nn.Dense(1)(nn.tanh(nn.Dense(64)(x))), {}

    env = wrap_env(venv, wrapper="gymnasium")
    if agent is not None:
        SequentialTrainer(cfg={"timesteps": timesteps, "headless": True, "disable_progressbar": True,
                               "close_environment_at_exit": False}, env=env, agents=agent).train()
        return agent
    models = {"policy": Policy(env.observation_space, env.state_space, env.action_space, env.device),
              "value": Value(env.observation_space, env.state_space, env.action_space, env.device)}
    for role, m in models.items():
        m.init_state_dict(role=role)
    cfg = PPO_CFG(**{"rollouts": 16, "learning_epochs": 4, "mini_batches": 4, "learning_rate": 3e-4, "discount_factor": 0.98,
                     **(cfg_overrides or {})})
    cfg.experiment.write_interval = 0
    cfg.experiment.checkpoint_interval = 0
    agent = PPO(models=models, memory=RandomMemory(memory_size=cfg.rollouts, num_envs=env.num_envs, device=env.device), cfg=cfg,
                observation_space=env.observation_space, state_space=env.state_space, action_space=env.action_space,
                device=env.device)
    SequentialTrainer(cfg={"timesteps": timesteps, "headless": True, "disable_progressbar": True,
                           "close_environment_at_exit": False}, env=env, agents=agent).train()
    return agent


def actor_layers(agent) -> list[tuple[np.ndarray, np.ndarray]]:
    """The trained actor's (W [in, out], b) pairs, in order, from skrl's flax parameters."""
    p = agent.policy.state_dict.params["params"]
    dense = sorted((k for k in p if k.startswith("Dense_")), key=lambda k: int(k.split("_")[1]))
    return [(np.asarray(p[k]["kernel"], np.float32), np.asarray(p[k]["bias"], np.float32)) for k in dense]


def actor_onnx(layers, path):
    """The actor as an ONNX file, as torch.onnx.export writes nn.Linear layers (Gemm, W as [out, in], transB=1)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, x = [], [], "obs"
    for i, (w, b) in enumerate(layers):
        inits += [numpy_helper.from_array(np.ascontiguousarray(w.T), f"W{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"b{i}"], [f"z{i}"], transB=1, name=f"/actor/Gemm_{i}"))
        x = f"z{i}"
        if i < len(layers) - 1:
            nodes.append(helper.make_node("Tanh", [x], [f"h{i}"], name=f"/actor/Tanh_{i}"))
            x = f"h{i}"
    g = helper.make_graph(nodes, "skrl_actor",
                          [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", layers[0][0].shape[0]])],
                          [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", layers[-1][0].shape[1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="skrl actor (test)")
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_outside_ppo_trains_through_the_gymnasium_interface_and_its_policy_flies_as_a_bundle(tmp_path):
    """skrl's PPO trains on edgectl/Hover-v0; its actor, as ONNX, with the environment's contract declared in TOML,
    goes through `edgectl import` -> `edgectl eval` -> `edgectl export --target c` -> `edgectl run --uri sim://`."""
    from typer.testing import CliRunner

    from edgectl import cli
    from edgectl.bundle import load_bundle
    from train_fast.importer import contract_template

    venv = gymnasium.make_vec("edgectl/Hover-v0", num_envs=N)
    agent = skrl_ppo(venv, timesteps=256, action_bias=venv.contract["action"]["hover_action"])  # 4096 env steps, 16 updates
    obs, _ = venv.reset(seed=5)
    actions, outputs = agent.policy.act({"observations": jax.numpy.asarray(obs)}, role="policy")
    assert actions.shape == (N, 4)
    layers = actor_layers(agent)
    assert [w.shape for w, _ in layers] == [(venv.single_observation_space.shape[0], 32), (32, 32), (32, 4)]
    h = obs  # the trained actor's mean, computed as a bundle computes it (tanh hidden layers, linear output)
    for w, b in layers[:-1]:
        h = np.tanh(h @ w + b)
    np.testing.assert_allclose(h @ layers[-1][0] + layers[-1][1], np.asarray(outputs["mean_actions"]), atol=1e-5)

    # the environment's observation is the contract's normalized one: the template's offsets and scales are it
    (tmp_path / "contract.toml").write_text(contract_template("hover"))
    model = actor_onnx(layers, tmp_path / "skrl_actor.onnx")
    bundle, runner = tmp_path / "skrl_hover", CliRunner()
    r = runner.invoke(cli.app, ["import", str(model), "--contract", str(tmp_path / "contract.toml"), "--out", str(bundle), "--json"])
    assert r.exit_code == 0, r.output
    b = load_bundle(bundle)
    assert b.contract == venv.contract
    raw = obs * np.asarray(b.contract["observation"]["normalization"]["scale"]) + np.asarray(b.contract["observation"]["normalization"]["offset"])
    np.testing.assert_allclose(b.act(raw), np.clip(np.asarray(outputs["mean_actions"]), -1, 1), atol=1e-4)

    r = runner.invoke(cli.app, ["eval", str(bundle), "--episodes", "16", "--json", "--plot", str(tmp_path / "eval.png")])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.output.strip().splitlines()[-1])
    assert ev["episodes"] == 16 and 0.0 <= ev["survival_rate"] <= 1.0
    r = runner.invoke(cli.app, ["export", str(bundle), "--target", "c", "--out", str(tmp_path / "c"), "--samples", "200", "--json"])
    assert r.exit_code == 0, r.output
    ex = json.loads(r.output.strip().splitlines()[-1])
    assert ex["parity"]["c_host_float32"]["max_abs_error"] < 1e-4
    r = runner.invoke(cli.app, ["run", str(bundle), "--uri", "sim://", "--seconds", "2", "--json", "--as-fast-as-possible",
                                "--log", str(tmp_path / "flight.csv")])
    assert r.exit_code == 0, r.output
    run = json.loads(r.output.strip().splitlines()[-1])
    assert run["ticks"] == 200 and run["shield"] is True and run["final_mode"]
