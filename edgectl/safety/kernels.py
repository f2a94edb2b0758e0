"""Array kernels behind Formula.robustness (numpy) and Formula.robustness_jax (jax.numpy).

Time is the last axis, leading axes are batch. Each backend provides: full, pad, shift (by k
samples, filling with a value), slide (min/max over a window of w samples) and scan (the
unbounded since/until recursion y[t] = max(p[t], min(q[t], y[t-1]))). JAX is imported on first use.
"""
from __future__ import annotations

import functools
import math

import numpy as np

INF = math.inf


class NP:
    """numpy kernels; time is the last axis."""
    abs, minimum, maximum, where, isnan = np.abs, np.minimum, np.maximum, np.where, np.isnan

    @staticmethod
    def full(shape, v):
        return np.full(shape, v, dtype=np.float64)

    @staticmethod
    def pad(x, before, after, v):
        if not before and not after:
            return x
        lead = x.shape[:-1]
        return np.concatenate([np.full((*lead, before), v), x, np.full((*lead, after), v)], axis=-1)

    @staticmethod
    def shift(y, k, v):
        """out[t] = y[t + k], v outside."""
        if k == 0:
            return y
        out = np.full(y.shape, v)
        if k > 0:
            out[..., :-k] = y[..., k:]
        else:
            out[..., -k:] = y[..., :k]
        return out

    @staticmethod
    def slide(x, w, is_min):
        """van Herk/Gil-Werman: out[i] = op x[i .. i+w-1], O(n) for any w."""
        if w == 1:
            return x
        op = np.minimum if is_min else np.maximum
        lead, L = x.shape[:-1], x.shape[-1]
        nb = -(-L // w)
        blocks = NP.pad(x, 0, nb * w - L, INF if is_min else -INF).reshape(*lead, nb, w)
        g = op.accumulate(blocks, axis=-1).reshape(*lead, nb * w)  # from each block's start
        h = op.accumulate(blocks[..., ::-1], axis=-1)[..., ::-1].reshape(*lead, nb * w)  # to its end
        return op(h[..., :L - w + 1], g[..., w - 1:L])

    @staticmethod
    def scan(p, q, reverse=False):
        """y[t] = max(p[t], min(q[t], y[t-1])), y[-1] = -inf (reverse: y[t+1], y[n] = -inf)."""
        if reverse:
            return NP.scan(p[..., ::-1], q[..., ::-1])[..., ::-1]
        return _scan_np(np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64))[0]


def _scan_np(p, q):
    # Inclusive scan of the maps f_t(y) = max(p_t, min(q_t, y)) under composition: pair up
    # neighbours, scan the half-length sequence, fill in the rest. O(n) work, log n numpy passes.
    n = p.shape[-1]
    if n == 1:
        return p, q
    m = n // 2
    pe, qe, po, qo = p[..., 0:2 * m:2], q[..., 0:2 * m:2], p[..., 1:2 * m:2], q[..., 1:2 * m:2]
    sp, sq = _scan_np(np.maximum(po, np.minimum(qo, pe)), np.minimum(qe, qo))
    outp, outq = np.empty_like(p), np.empty_like(q)
    outp[..., 1:2 * m:2], outq[..., 1:2 * m:2] = sp, sq
    outp[..., 0], outq[..., 0] = p[..., 0], q[..., 0]
    ev_p, ev_q = p[..., 2::2], q[..., 2::2]
    k = ev_p.shape[-1]
    outp[..., 2::2] = np.maximum(ev_p, np.minimum(ev_q, sp[..., :k]))
    outq[..., 2::2] = np.minimum(sq[..., :k], ev_q)
    return outp, outq


_JAX = None


def jax_ops():
    global _JAX
    if _JAX is None:
        import jax
        import jax.numpy as jnp

        class _JNP:
            abs, minimum, maximum, where, isnan = jnp.abs, jnp.minimum, jnp.maximum, jnp.where, jnp.isnan

            @staticmethod
            def full(shape, v):
                return jnp.full(shape, v)

            @staticmethod
            def pad(x, before, after, v):
                if not before and not after:
                    return x
                cfg = [(0, 0)] * (x.ndim - 1) + [(before, after)]
                return jnp.pad(x, cfg, constant_values=v)

            @staticmethod
            def shift(y, k, v):
                if k == 0:
                    return y
                n = y.shape[-1]
                if k > 0:
                    return _JNP.pad(y[..., k:], 0, min(k, n), v)[..., :n]
                return _JNP.pad(y[..., :n + k], min(-k, n), 0, v)[..., -n:]

            @staticmethod
            def slide(x, w, is_min):
                # H ~ 50 in the shield: w shifted slices beat a block scheme under XLA.
                op = jnp.minimum if is_min else jnp.maximum
                L = x.shape[-1] - w + 1
                out = x[..., 0:L]
                for k in range(1, w):
                    out = op(out, x[..., k:k + L])
                return out

            @staticmethod
            def scan(p, q, reverse=False):
                p, q = jnp.broadcast_arrays(p, q)
                return _scan(p, q, reverse)

        def combine(e, later):  # e: earlier maps, later: later ones
            return jnp.maximum(later[0], jnp.minimum(later[1], e[0])), jnp.minimum(e[1], later[1])

        # jit: called eagerly, an associative scan is hundreds of tiny dispatches (~2 s); under
        # an outer jit this inlines.
        @functools.partial(jax.jit, static_argnums=2)
        def _scan(p, q, reverse):
            return jax.lax.associative_scan(combine, (p, q), reverse=reverse, axis=p.ndim - 1)[0]

        _JAX = _JNP
    return _JAX
