"""int8 post-training quantization of a bundle's MLP, and the NumPy model of its integer arithmetic.

The scheme (every integer step is exact, so C on any machine and this NumPy model agree bit for bit):

- Input: each observation feature i gets its own 16-bit scale s_x[i] from calibration data (the largest
  |normalized value| seen, times a headroom, over 32767). Normalization and input scale fold into one
  float32 multiply: q_x[i] = clamp(round_half_away((x[i] - offset[i]) * k[i]), -32767, 32767), with
  k[i] = 1 / (scale[i] s_x[i]). Why 16 bits at the input: with 8, a position error had 5 mm steps and the
  hovering policy lost 5 mm of precision; SMLAD multiplies 16-bit operands anyway, so the wider input
  costs no instruction. Weights and hidden activations are int8.
- Weights: per output channel, symmetric: q_w[i, j] = round(W'[i, j] / s_w[j]), s_w[j] = max_i |W'[i, j]| / 127,
  where the first layer's W'[i, j] = s_x[i] W[i, j] (the input scale folded in) and later layers'
  W' = W / 127 (hidden activations are int8 with scale 1/127). Biases are int32 in units of s_w[j].
- Hidden activation: tanh through a 1024-entry int8 table over z in [-4, 4) in steps of 1/128
  (tanh(3.99) already rounds to 127/127, so clamping the index saturates correctly; one signed
  saturate instruction does it on a Cortex-M4). The int32 accumulator maps to a table index with a
  per-channel fixed-point multiplier: idx = (acc * m[j] + 2^(S-1)) >> S, m[j] = round(s_w[j] * 128 * 2^S),
  y = TABLE[clamp(idx, -512, 511) + 512].
  Only tanh actors are quantized (every trainer here makes them); calibrate() refuses others by field.
- Output layer: action[j] = clip(float32(acc[j]) * s_w[j], low, high), one float32 multiply.

Calibration observations come from closed-loop simulator rollouts (export/calibration.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ExportError

TANH_STEPS_PER_UNIT = 128  # table resolution in pre-activation units: the slope of tanh is <= 1, so < 1 LSB per step
TANH_RANGE = 4.0
TANH_HALF = int(TANH_RANGE * TANH_STEPS_PER_UNIT)  # 512
TANH_TABLE_SIZE = 2 * TANH_HALF  # 1024 entries: z = (k - 512) / 128 for k = 0 .. 1023
INPUT_MAX = 32767  # 16-bit input codes (see above)
SHIFT = 24  # fixed-point fraction bits of the index multiplier; acc * m stays far below 2^63


def tanh_table() -> np.ndarray:
    z = (np.arange(TANH_TABLE_SIZE, dtype=np.float64) - TANH_HALF) / TANH_STEPS_PER_UNIT
    return np.round(127.0 * np.tanh(z)).astype(np.int8)


@dataclass(frozen=True)
class QuantizedLayer:
    weight: np.ndarray  # int8 [in, out]
    bias: np.ndarray  # int32 [out]
    weight_scale: np.ndarray  # float32 [out]: real value of one accumulator unit
    multiplier: np.ndarray  # int32 [out]: accumulator -> tanh table index (hidden layers only; zeros on the last)


@dataclass(frozen=True)
class QuantizedPolicy:
    obs_offset: np.ndarray  # float32 [obs]
    input_gain: np.ndarray  # float32 [obs]: k[i] = 1 / (scale[i] * s_x[i])
    input_scale: np.ndarray  # float32 [obs]: s_x[i], normalized units per input code
    layers: tuple[QuantizedLayer, ...]
    action_low: float
    action_high: float
    calibration: dict  # what the scales came from: sample count, per-layer pre-activation ranges

    @property
    def obs_size(self) -> int:
        return int(self.obs_offset.size)

    @property
    def action_size(self) -> int:
        return int(self.layers[-1].bias.size)

    def quantize_input(self, obs: np.ndarray) -> np.ndarray:
        """The 16-bit input codes, with exactly the float32 operations the C performs."""
        x = np.asarray(obs, dtype=np.float32)
        v = (x - self.obs_offset) * self.input_gain  # two float32 ops, in C's order
        v = np.clip(v, np.float32(-INPUT_MAX), np.float32(INPUT_MAX))
        half = np.where(v >= 0, np.float32(0.5), np.float32(-0.5)).astype(np.float32)
        return np.trunc((v + half).astype(np.float32)).astype(np.int64)  # C: (int)(v + half), truncation

    def forward(self, obs: np.ndarray) -> np.ndarray:
        """Actions for (N, obs) or (obs,) raw observations: the reference the C int8 code must equal bit for bit."""
        single = np.ndim(obs) == 1
        h = self.quantize_input(np.atleast_2d(obs))
        table = tanh_table().astype(np.int64)
        for layer in self.layers[:-1]:
            acc = h @ layer.weight.astype(np.int64) + layer.bias.astype(np.int64)
            idx = (acc * layer.multiplier.astype(np.int64) + (1 << (SHIFT - 1))) >> SHIFT
            h = table[np.clip(idx, -TANH_HALF, TANH_HALF - 1) + TANH_HALF]
        last = self.layers[-1]
        acc = h @ last.weight.astype(np.int64) + last.bias.astype(np.int64)
        a = acc.astype(np.float32) * last.weight_scale  # |acc| < 2^24, so the int -> float conversion is exact
        a = np.minimum(np.maximum(a, np.float32(self.action_low)), np.float32(self.action_high)).astype(np.float32)
        return a[0] if single else a


def _per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.abs(w).max(axis=0) / 127.0
    s = np.where(s > 0, s, 1.0)  # an all-zero column: any scale represents it exactly
    return np.clip(np.round(w / s), -127, 127).astype(np.int8), s


def calibrate(bundle, calib_obs: np.ndarray, headroom: float = 2.0) -> QuantizedPolicy:
    """Quantize `bundle`'s actor with input ranges taken from `calib_obs` (N, obs) raw observations.

    Each feature's range is the largest |normalized value| seen times `headroom`: a clipped input is
    what loses vehicles (measured with 8-bit inputs: 5,000 samples clipped rare tumbling starts and cost
    1.3 points of survival; 20,000 samples, or headroom, cost none); with 16-bit inputs range is cheap.
    """
    if not headroom >= 1.0:
        raise ExportError(f"calibration headroom: expected a number >= 1, got {headroom!r}")
    contract = bundle.contract
    size = contract["observation"]["size"]
    act = bundle.manifest["policy"]["activation"]
    if act != "tanh":
        raise ExportError(f"{bundle.path}/bundle.json: policy.activation: int8 export supports 'tanh', got {act!r}")
    obs = np.asarray(calib_obs, dtype=np.float64)
    if obs.ndim != 2 or obs.shape[1] != size or len(obs) < 100:
        raise ExportError(f"calibration observations: expected at least 100 rows of observation.size = {size}, got shape {list(obs.shape)}")
    if not np.all(np.isfinite(obs)):
        raise ExportError("calibration observations: contain NaN or inf")
    norm = contract["observation"]["normalization"]
    offset = np.asarray(norm["offset"], np.float64)
    scale = np.asarray(norm["scale"], np.float64)
    xn = (obs - offset) / scale
    s_x = headroom * np.abs(xn).max(axis=0) / INPUT_MAX
    s_x = np.where(s_x > 1e-12, s_x, 1.0 / INPUT_MAX)  # a constant-zero feature (e.g. a zero reference)
    gain = (1.0 / (scale * s_x)).astype(np.float32)

    layers, ranges = [], []
    h_real = xn  # float reference activations, to record the pre-activation ranges seen
    in_scale = s_x  # real value of one input code, per input feature
    for li, (w, b) in enumerate(bundle.layers):
        w = np.asarray(w, np.float64)
        b = np.asarray(b, np.float64)
        qw, s_w = _per_channel(w * in_scale[:, None])
        qb = np.round(b / s_w).astype(np.int64)
        if np.any(np.abs(qb) >= 2**31):
            raise ExportError(f"layer {li}: bias too large for int32 after quantization (max {int(np.abs(qb).max())})")
        z = h_real @ w + b
        ranges.append([float(z.min()), float(z.max())])
        last = li == len(bundle.layers) - 1
        mult = np.zeros(w.shape[1], np.int64) if last else np.round(s_w * TANH_STEPS_PER_UNIT * 2.0**SHIFT).astype(np.int64)
        if np.any(mult >= 2**31):
            raise ExportError(f"layer {li}: weight scale too large for the int32 index multiplier")
        layers.append(QuantizedLayer(weight=qw, bias=qb.astype(np.int32), weight_scale=s_w.astype(np.float32),
                                     multiplier=mult.astype(np.int32)))
        h_real = np.tanh(z)
        in_scale = np.full(w.shape[1], 1.0 / 127.0)
    a = contract["action"]
    return QuantizedPolicy(obs_offset=offset.astype(np.float32), input_gain=gain, input_scale=s_x.astype(np.float32),
                           layers=tuple(layers), action_low=float(a["low"]), action_high=float(a["high"]),
                           calibration={"samples": int(len(obs)), "headroom": float(headroom), "preactivation_ranges": ranges,
                                        "input_abs_max_normalized": (s_x * INPUT_MAX).round(6).tolist()})
