"""Host-side (Numba) simulators: the same dynamics as the JAX ones, without importing JAX."""
from train_fast.sims.numba.quadrotor import (  # noqa: F401
    PARAM_FIELDS,
    PARAM_NAMES,
    PARAM_SIZE,
    STATE_NAMES,
    STATE_SIZE,
    hover_action,
    hover_motor,
    hover_state,
    params_from_platform,
    params_to_array,
    rollout_batch,
    state_to_array,
    step,
    step_batch,
    step_into,
)
