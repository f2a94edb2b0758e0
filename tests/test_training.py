"""A short, step-budgeted training run (deterministic schedule) must clearly improve the policy."""
import dataclasses

import numpy as np
import pytest

from edgectl.bundle import load_bundle
from train_fast.evaluate import evaluate_bundle
from train_fast.train import save_bundle, train


@pytest.fixture(scope="module")
def short_run():
    return train(seconds=120, seed=3, max_env_steps=1_310_720, ppo_overrides={"eval_episodes": 128})


def test_return_clearly_improves(short_run):
    h = short_run.history
    assert h[0]["env_steps"] < h[-1]["env_steps"] <= 1_310_720 + 131_072
    # From crashing at once (return ~ a few) to staying up: a five-fold rise, not noise.
    assert h[-1]["mean_return"] > 5 * max(h[0]["mean_return"], 1.0)
    assert h[-1]["termination_rate"] < h[0]["termination_rate"]


def test_best_checkpoint_flies_better_than_untrained(short_run, tmp_path):
    b = load_bundle(save_bundle(short_run, tmp_path / "b"))
    assert b.metrics["best_chunk"] >= 2
    trained, _ = evaluate_bundle(b, episodes=128)
    # The untrained baseline: a constant hover command (what the actor is initialized to), same episodes.
    hover = short_run.contract["action"]["hover_action"]
    layers = [(np.zeros_like(w), np.zeros_like(bias)) for w, bias in short_run.actor_layers]
    layers[-1] = (layers[-1][0], np.full_like(layers[-1][1], hover))
    flat = load_bundle(save_bundle(dataclasses.replace(short_run, actor_layers=layers), tmp_path / "flat"))
    untrained, _ = evaluate_bundle(flat, episodes=128)
    assert untrained["survival_rate"] < 0.5
    assert trained["survival_rate"] > untrained["survival_rate"] + 0.3
