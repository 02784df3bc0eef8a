"""The re-scaling invariance table (seed 000; Ba et al. 2016, Layer Normalization, table 1), checked
numerically on a tiny Dense (MLP) and Conv layer, no bias, followed by a norm:

                  weight-vector   data   weight-matrix
  batch norm        invariant   invariant  invariant
  layer norm          no        invariant  invariant
  instance norm     invariant   invariant  invariant     (conv only: MLPs have no spatial set S)
  group norm          no        invariant  invariant
  weight norm       invariant     no       invariant

Weight-vector re-scaling multiplies one output unit's weights by phi; data re-scaling x -> phi x;
weight-matrix re-scaling multiplies all weights by phi. With eps > 0 invariance is only approximate:
x/sqrt(var + eps) moves by ~|x_hat| eps / (2 var) (1 - 1/phi^2) (measured 6e-10 with eps = 1e-10 on
these tiny layers), so eps = 1e-12 in float64: invariant outputs move by < 1e-11 (threshold 1e-9), a
non-invariant one by O(1).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import normlab as nl

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)


EPS = 1e-12
PHI = 3.0
UNIT = 2  # the output unit whose weight vector is re-scaled
RESCALINGS = ("weight_vector", "data", "weight_matrix")
NORMS = ("batch", "layer", "instance", "group", "weight")
TABLE = {  # True = invariant
    "batch": (True, True, True),
    "layer": (False, True, True),
    "instance": (True, True, True),
    "group": (False, True, True),
    "weight": (True, False, True),
}

_rng = np.random.default_rng(0)
# NumPy float64: jax arrays are made inside the tests (float64 fixture)
DATA = {"dense": _rng.normal(size=(16, 5)), "conv": _rng.normal(size=(4, 6, 6, 3))}
KERNEL = {"dense": _rng.normal(size=(5, 8)), "conv": _rng.normal(size=(3, 3, 3, 8))}


def _linear(kind, x, w):
    if kind == "dense":
        return x @ w
    dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)


def layer(kind, norm, x, w):
    """Linear layer (no bias) followed by the norm; for weight norm the kernel is normalized instead."""
    if norm == "weight":
        return _linear(kind, x, nl.weight_norm(w, eps=1e-300))
    a = _linear(kind, x, w)
    if norm == "batch":
        return nl.batch_norm(a, eps=EPS)
    if norm == "layer":  # over every unit of the layer (and position, for conv)
        return nl.layer_norm(a, eps=EPS, reduction_axes=tuple(range(1, a.ndim)))
    if norm == "instance":
        return nl.instance_norm(a, eps=EPS)
    if norm == "group":
        return nl.group_norm(a, num_groups=2, eps=EPS)
    raise AssertionError(norm)


def rescaled(kind, how):
    x, w = jnp.asarray(DATA[kind]), jnp.asarray(KERNEL[kind])
    if how == "weight_vector":
        return x, w.at[..., UNIT].multiply(PHI)
    if how == "data":
        return PHI * x, w
    return x, PHI * w


def _applies(kind, norm):
    return not (kind == "dense" and norm == "instance")


CELLS = [(k, n, h) for k in ("dense", "conv") for n in NORMS for h in RESCALINGS if _applies(k, n)]


@functools.lru_cache(maxsize=None)
def _changes():
    """max |output change| for every cell, all in one jit (one XLA compile)."""
    @jax.jit
    def run():
        return [jnp.max(jnp.abs(layer(k, n, *rescaled(k, h)) - layer(k, n, DATA[k], KERNEL[k])))
                for k, n, h in CELLS]
    return {cell: float(d) for cell, d in zip(CELLS, run())}


def change(kind, norm, how):
    return _changes()[kind, norm, how]


@pytest.mark.parametrize("kind,norm,how", CELLS)
def test_invariance_table(kind, norm, how):
    d = change(kind, norm, how)
    if TABLE[norm][RESCALINGS.index(how)]:
        assert d < 1e-9, f"{norm} should be invariant to {how} re-scaling ({kind}); output moved {d:.2e}"
    else:
        assert d > 1e-2, f"{norm} should NOT be invariant to {how} re-scaling ({kind}); output moved {d:.2e}"


@jax.jit
def _details():
    out = {}
    for kind in ("dense", "conv"):  # WN: data re-scaling scales the output by phi exactly
        out["wn", kind] = (layer(kind, "weight", DATA[kind], KERNEL[kind]),
                           layer(kind, "weight", PHI * DATA[kind], KERNEL[kind]))
    x, w1 = rescaled("dense", "weight_vector")
    for norm in ("layer", "group", "batch"):
        out["wv", norm] = jnp.abs(layer("dense", norm, x, w1) - layer("dense", norm, DATA["dense"], KERNEL["dense"]))
    return out


def test_weight_norm_data_rescaling_scales_output_by_phi():
    out = _details()
    for kind in ("dense", "conv"):
        y0, y1 = out["wn", kind]
        assert float(jnp.max(jnp.abs(y1 - PHI * y0))) < 1e-12


def test_layer_and_group_norm_weight_vector_rescaling_moves_other_units():
    """LN/GN are not weight-vector invariant because the re-scaled unit shifts the shared statistics:
    units other than the re-scaled one (in its group) change too; BN's other units are untouched."""
    out = _details()
    others = [c for c in range(4) if c != UNIT]  # same GN group (channels 0-3) as UNIT
    for norm, moves in (("layer", True), ("group", True), ("batch", False)):
        assert (float(out["wv", norm][:, others].max()) > 1e-2) == moves, norm
    # GN: channels of the other group do not move
    assert float(out["wv", "group"][:, 4:].max()) < 1e-12


def test_print_invariance_matrix():
    """Prints the measured table (max |output change|, 'inv' if < 1e-9) and checks it equals TABLE."""
    lines = [f"{'':18s}" + "".join(f"{h:>16s}" for h in RESCALINGS)]
    measured = {}
    for kind in ("dense", "conv"):
        for norm in NORMS:
            if not _applies(kind, norm):
                lines.append(f"{kind + '/' + norm:18s}" + "".join(f"{'n/a':>16s}" for _ in RESCALINGS))
                continue
            row = tuple(change(kind, norm, h) for h in RESCALINGS)
            measured[kind, norm] = tuple(d < 1e-9 for d in row)
            lines.append(f"{kind + '/' + norm:18s}" + "".join(
                f"{('inv' if d < 1e-9 else 'CHANGES') + f' {d:.0e}':>16s}" for d in row))
    print("\nre-scaling invariance (max |change| of the normalized output):\n" + "\n".join(lines))
    for (kind, norm), row in measured.items():
        assert row == TABLE[norm], (kind, norm, row)
