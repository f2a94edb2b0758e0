"""edgectl: train tiny policies in JAX, export them to MCUs, fly them. Importing it registers the gymnasium ids
(edgectl/Hover-v0, ...; see edgectl/gym_ids.py) without importing gymnasium or JAX."""
from . import gym_ids as _gym_ids

_gym_ids.install()
