"""LSTM / GRU classifiers for sequences (N, T, F) with normalized gate pre-activations.

Each gate pre-activation is normalized as one vector per step, then biased:
  LSTM: (i, f, g, o) = N_gates(W_x x_t + W_h h_{t-1}) + b,  h_t = o * tanh(N_c(c_t))
  GRU:  (r, z) = N_rz(W_x^rz x_t + W_h^rz h_{t-1}) + b_rz,
        n = tanh(N_n(W_x^n x_t + r * W_h^n h_{t-1}) + b_n),  h_t = (1 - z) n + z h_{t-1}
(the summed form of Ba et al. 2016's layer-norm RNN; normalizing W_x x alone would, for F = 1
inputs such as mnist1d, leave layer norm only the sign of x_t). `rnn_norm` picks N (see
`normlab.models.seqnorm`); by default it follows the injected norm ('none', 'layer', 'batch'; the
kernel norms act on W_x / W_h and use 'none').
W_x x runs for all steps at once; the recurrence runs under `nn.scan` (init unrolls it in Python:
a scan cannot create its carried batch_stats). W_h is materialized once per call as Dense(I), so a
kernel norm on it runs (and spectral norm's power iteration updates) once per sequence, not per
step; weight norm's data_init applies to W_x and the head only.
Padding: `mask` (N, T) marks valid steps; at a padded step the state is carried through unchanged
and nothing enters batch statistics, so the classifier reads the last valid state.
Intermediates: `x_preact` (N, T, G*H), `states` (N, T, H) and, per step under `cell/`,
`gates_*` / `c_*` (LSTM) or `rz_*` / `n_*` (GRU) as `_preact` / `_normed`, each (N, T, .).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from normlab.core import psum
from normlab.models.common import check_placement, dense
from normlab.models.seqnorm import RNN_NORMS, seq_norm
from normlab.registry import NormFactory, rnn_capable_norms

CELLS = {"lstm": 4, "gru": 3}  # gate count


class _Cell(nn.Module):
  """One recurrent step on carry (h, c, t), input (W_x x_t, valid flags (N,)), W_h and the number
  of steps with a valid example (the shared batch norm's updates per call)."""
  cell: str
  hidden: int
  norm: NormFactory
  rnn_norm: str
  steps: int  # this call's sequence length T
  train: bool
  axis_name: Any = None

  def _norm(self, name, x, valid, t, active, use_bias=False):
    self.sow("intermediates", f"{name}_preact", x)
    opts = self.norm.options if self.norm.rnn_norm in ("layer", "batch") else {}
    f = seq_norm(self.rnn_norm, name=f"norm_{name}", max_steps=self.steps, axis_name=self.axis_name,
                 use_bias=use_bias, options=opts, updates_per_call=active)
    y = f(x[:, None], self.train, valid[:, None], t)[:, 0]
    self.sow("intermediates", f"{name}_normed", y)
    return y

  @nn.compact
  def __call__(self, carry, inputs, w_h, active):
    h, c, t = carry
    gx, valid = inputs
    hd, g = self.hidden, CELLS[self.cell]
    gh = h @ w_h

    def bias_init(key, shape, dtype=jnp.float32):
      b = jnp.zeros(shape, dtype)
      return b.at[hd:2 * hd].set(1.0) if self.cell == "lstm" else b  # forget gate starts open

    b = self.param("bias", bias_init, (g * hd,), jnp.float32).astype(gx.dtype)
    if self.cell == "lstm":
      i, f, cand, o = jnp.split(self._norm("gates", gx + gh, valid, t, active) + b, 4, axis=-1)
      c_new = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(cand)
      h_new = jax.nn.sigmoid(o) * jnp.tanh(self._norm("c", c_new, valid, t, active, use_bias=True))
    else:
      rz = self._norm("rz", gx[:, :2 * hd] + gh[:, :2 * hd], valid, t, active) + b[:2 * hd]
      r, z = jnp.split(jax.nn.sigmoid(rz), 2, axis=-1)
      n = jnp.tanh(self._norm("n", gx[:, 2 * hd:] + r * gh[:, 2 * hd:], valid, t, active) + b[2 * hd:])
      h_new = (1 - z) * n + z * h
      c_new = c
    keep = valid[:, None]
    h, c = jnp.where(keep, h_new, h), jnp.where(keep, c_new, c)
    return (h, c, t + 1), h


class RNN(nn.Module):
  """LSTM or GRU over (N, T, F) (or (N, T)), Dense classifier on the last valid hidden state.

  The recurrent norms act on gate pre-activations, so only 'before_activation' is accepted.
  Per-step batch statistics ('batch') are sized by the init batch's length T.
  """
  num_classes: int
  norm: NormFactory
  placement: str = "before_activation"
  axis_name: Any = None
  cell: str = "lstm"
  hidden: int = 128
  rnn_norm: str | None = None
  data_init: bool = False
  dtype: Any = jnp.float32

  def resolved_rnn_norm(self) -> str:
    if self.rnn_norm is not None:
      kind = self.rnn_norm
    elif self.norm.rnn_norm is not None:
      kind = self.norm.rnn_norm
    else:
      raise ValueError(f"RNN: norm {self.norm.name!r} has no recurrent version; valid norms: "
                       f"{', '.join(rnn_capable_norms())} (or set rnn_norm to one of {', '.join(RNN_NORMS)})")
    if kind not in RNN_NORMS:
      raise ValueError(f"RNN: unknown rnn_norm {kind!r}; valid choices: {', '.join(RNN_NORMS)}")
    return kind

  @nn.compact
  def __call__(self, x, train: bool = True, mask=None):
    check_placement(self.placement, model="RNN", valid=("before_activation",))
    if self.cell not in CELLS:
      raise ValueError(f"RNN: unknown cell {self.cell!r}; valid cells: {', '.join(CELLS)}")
    kind = self.resolved_rnn_norm()
    x = jnp.asarray(x, self.dtype)
    if x.ndim == 2:
      x = x[..., None]
    if x.ndim != 3:
      raise ValueError(f"RNN: expected an input (N, T, F) or (N, T), got shape {x.shape}")
    n, steps = x.shape[:2]
    valid = jnp.ones((n, steps), bool) if mask is None else jnp.asarray(mask).astype(bool)
    if valid.shape != (n, steps):
      raise ValueError(f"RNN: mask must have shape (N, T) = {(n, steps)}, got {valid.shape}")
    g = CELLS[self.cell]
    gx = dense(self.norm, g * self.hidden, use_bias=False, data_init=self.data_init, name="w_x")(x, train=train)
    self.sow("intermediates", "x_preact", gx)
    # W_h = Dense(I): the kernel norm (weight/weight_std/spectral) runs once per call, not per step.
    w_h = dense(self.norm, g * self.hidden, use_bias=False, name="w_h")(jnp.eye(self.hidden, dtype=self.dtype),
                                                                          train=train)
    counts = psum(jnp.sum(valid, 0), self.axis_name if kind == "batch_shared" else None)
    active = jnp.maximum(jnp.sum(counts > 0), 1).astype(jnp.float32)
    zeros = jnp.zeros_like(gx[:, 0, :self.hidden])  # like the input: varying over shard_map axes
    carry = (zeros, zeros, jnp.zeros((), jnp.int32))
    args = (self.cell, self.hidden, self.norm, kind, steps, train, self.axis_name)
    if self.is_initializing():
      # nn.scan cannot create carried variables (batch_stats) inside the loop: init unrolls instead.
      cell, outs = _Cell(*args, name="cell"), []
      for s in range(steps):
        carry, h_s = cell(carry, (gx[:, s], valid[:, s]), w_h, active)
        outs.append(h_s)
      states = jnp.stack(outs, axis=1)
    else:
      # Running statistics are carried (and updated) only when batch_stats is mutable; a carried
      # collection that cannot be written breaks the scan, so otherwise they are broadcast, read-only.
      update = self.is_mutable_collection("batch_stats")
      scan = nn.scan(_Cell, variable_broadcast="params" if update else ("params", "batch_stats"),
                     variable_carry="batch_stats" if update else False, variable_axes={"intermediates": 1},
                     split_rngs={"params": False}, in_axes=(1, nn.broadcast, nn.broadcast), out_axes=1)
      carry, states = scan(*args, name="cell")(carry, (gx, valid), w_h, active)
    self.sow("intermediates", "states", states)
    logits = dense(self.norm, self.num_classes, data_init=self.data_init, name="head")(carry[0], train=train)
    return logits.astype(jnp.float32)
