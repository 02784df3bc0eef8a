"""Bad arguments to every public function of the functional API: each raises a one-line ValueError or
TypeError that names the function, the argument and what it got, eagerly and while tracing under jit.

Every case is a (function, argument, bad value) triple run through `_expect`; `test_bad_input_count`
says how many there are. The layers' side (same errors through the Flax modules) is in
tests/test_layer_checks.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

import normlab as nl
from normlab.checks import SingleValueError

pytestmark = pytest.mark.usefixtures("float64")  # float64 inputs and references (tests/conftest.py)

N, T, C = 4, 5, 3
X = jnp.asarray(np.random.default_rng(0).normal(size=(N, T, C)), jnp.float32)
RUNNING = nl.Moments(jnp.zeros(C), jnp.ones(C))
KEY = jax.random.key(0, impl="rbg")  # rbg compiles much faster than threefry on CPU

# name -> a call with the argument to vary as keyword (x, scale, bias, mask, running, ...) and
# everything else valid
CALLS = {
    "batch_norm": lambda x=X, **kw: nl.batch_norm(x, **kw),
    "layer_norm": lambda x=X, **kw: nl.layer_norm(x, **kw),
    "rms_norm": lambda x=X, **kw: nl.rms_norm(x, **kw),
    "instance_norm": lambda x=X, **kw: nl.instance_norm(x, **kw),
    "group_norm": lambda x=X, **kw: nl.group_norm(x, num_groups=1, **kw),
    "ghost_batch_norm": lambda x=X, **kw: nl.ghost_batch_norm(x, **{"virtual_batch_size": 2, **kw}),
    "batch_renorm": lambda x=X, **kw: nl.batch_renorm(x, **{"running": RUNNING, **kw}),
    "frozen_batch_norm": lambda x=X, mean=RUNNING.mean, var=RUNNING.var, **kw: nl.frozen_batch_norm(
        x, mean, var, **kw),
    "lp_batch_norm": lambda x=X, **kw: nl.lp_batch_norm(x, **kw),
    "noisy_batch_norm": lambda x=X, **kw: nl.noisy_batch_norm(x, KEY, **kw),
    "filter_response_norm": lambda x=X, **kw: nl.filter_response_norm(x, **kw),
    "evonorm_b0": lambda x=X, **kw: nl.evonorm_b0(x, **kw),
    "evonorm_s0": lambda x=X, **kw: nl.evonorm_s0(x, num_groups=1, **kw),
    "switchable_norm": lambda x=X, **kw: nl.switchable_norm(x, **kw),
    "local_response_norm": lambda x=X, **kw: nl.local_response_norm(x, **kw),
    "weight_norm": lambda x=X, **kw: nl.weight_norm(x, **kw),
    "weight_standardize": lambda x=X, **kw: nl.weight_standardize(x, **kw),
    "spectral_normalize": lambda x=X, **kw: nl.spectral_normalize(x, kw.pop("u", jnp.ones(C)), **kw),
    "weight_norm_data_init": lambda x=X, **kw: nl.weight_norm_data_init(x, **kw),
}
X_NAME = {"weight_norm": "v", "weight_standardize": "w", "spectral_normalize": "w",
          "weight_norm_data_init": "pre_activations"}
PARAMS = {  # per-channel parameters each function takes
    "batch_norm": ("scale", "bias"), "layer_norm": ("scale", "bias"), "rms_norm": ("scale",),
    "instance_norm": ("scale", "bias"), "group_norm": ("scale", "bias"), "ghost_batch_norm": ("scale", "bias"),
    "batch_renorm": ("scale", "bias"), "frozen_batch_norm": ("scale", "bias"),
    "lp_batch_norm": ("scale", "bias"),
    "noisy_batch_norm": ("scale", "bias"), "filter_response_norm": ("scale", "bias", "tau"),
    "evonorm_b0": ("scale", "bias", "v"), "evonorm_s0": ("scale", "bias", "v"),
    "switchable_norm": ("scale", "bias"), "weight_norm": ("g",), "spectral_normalize": ("u",),
}
MASKED = ("batch_norm", "layer_norm", "instance_norm", "group_norm", "ghost_batch_norm", "batch_renorm",
          "lp_batch_norm", "noisy_batch_norm", "evonorm_b0", "switchable_norm")
RUNNING_FNS = ("batch_norm", "batch_renorm", "lp_batch_norm", "evonorm_b0", "switchable_norm")
# train-mode batch statistics: (the call, an input with one value per channel)
SINGLE = {
    "batch_norm": jnp.ones((1, C)), "ghost_batch_norm": jnp.ones((4, C)), "batch_renorm": jnp.ones((1, C)),
    "lp_batch_norm": jnp.ones((1, C)), "noisy_batch_norm": jnp.ones((1, C)), "evonorm_b0": jnp.ones((1, 1, C)),
    "switchable_norm": jnp.ones((1, 1, C)),
}
BAD_DTYPES = (jnp.int32, jnp.int8, jnp.uint8, jnp.bool_, jnp.complex64, jnp.complex128,
              ml_dtypes.float8_e4m3fn)


def _cases():
  cases, seen = [], set()

  def add(fn, arg, desc, kwargs, exc, *needles):
    jit = (fn, arg) not in seen  # the first bad value of each argument is also tried under jit
    seen.add((fn, arg))
    cases.append(pytest.param(fn, kwargs, exc, (fn + ":", arg) + needles, jit, id=f"{fn}-{arg}-{desc}"))

  for fn in CALLS:
    xn = X_NAME.get(fn, "x")
    for dt in BAD_DTYPES:
      name = np.dtype(dt).name
      add(fn, xn, name, {"x": np.zeros((N, T, C), dt)}, TypeError, name, "float32")
    add(fn, xn, "list", {"x": [[1.0, 2.0]]}, TypeError, "list")
    for p in PARAMS.get(fn, ()):
      for shape in ((C + 1,), (2,), (T, C)):
        add(fn, p, f"shape{shape}", {p: jnp.ones(shape)}, ValueError, str(shape))
      add(fn, p, "complex", {p: jnp.ones((C,), jnp.complex64)}, TypeError, "complex64")
    if fn in MASKED:
      for shape in ((N - 1, 1, 1), (N, T, C + 1), (2, N, T, C)):
        add(fn, "mask", f"shape{shape}", {"mask": jnp.ones(shape, bool)}, ValueError, str(shape))
      add(fn, "mask", "complex", {"mask": jnp.ones((N, 1, 1), jnp.complex64)}, TypeError, "complex64")
      add(fn, "mask", "list", {"mask": [True] * N}, TypeError, "list")
    if fn in RUNNING_FNS:
      for shape in ((C + 2,), (2,), (T, C)):
        add(fn, "running.mean", f"shape{shape}", {"running": nl.Moments(jnp.zeros(shape), jnp.ones(C))},
            ValueError, str(shape))
        add(fn, "running.var", f"shape{shape}", {"running": nl.Moments(jnp.zeros(C), jnp.ones(shape))},
            ValueError, str(shape))
      add(fn, "running", "not-moments", {"running": jnp.ones(C)}, TypeError, "Moments")
    if fn in SINGLE:
      kw = {"x": SINGLE[fn]}
      if fn == "ghost_batch_norm":
        kw["virtual_batch_size"] = 1
      add(fn, "allow_single_value", "one-value", kw, SingleValueError, "1 value per channel")
    if fn not in ("local_response_norm", "spectral_normalize"):
      for eps in (0.0, -1.0, float("nan")):
        add(fn, "eps", repr(eps), {"eps": eps}, ValueError, repr(eps))
  for shape in ((C + 1,), (2,)):
    add("frozen_batch_norm", "mean", f"shape{shape}", {"mean": jnp.zeros(shape)}, ValueError, str(shape))
    add("frozen_batch_norm", "var", f"shape{shape}", {"var": jnp.ones(shape)}, ValueError, str(shape))
  return cases


CASES = _cases()


def _expect(fn, kwargs, exc, needles, *, jit):
  call = CALLS[fn]
  if jit:
    arrays = {k: v for k, v in kwargs.items() if isinstance(v, jax.Array) or isinstance(v, np.ndarray)
              and v.dtype != object}
    rest = {k: v for k, v in kwargs.items() if k not in arrays}
    run = lambda: jax.jit(lambda a: call(**a, **rest))(arrays)  # noqa: E731
  else:
    run = lambda: call(**kwargs)  # noqa: E731
  with pytest.raises(exc) as info:
    run()
  msg = str(info.value)
  assert "\n" not in msg, msg
  assert isinstance(info.value, (ValueError, TypeError))
  for needle in needles:
    assert needle in msg, (needle, msg)


@pytest.mark.parametrize("fn, kwargs, exc, needles, jit", CASES)
def test_bad_input_is_a_one_line_error(fn, kwargs, exc, needles, jit):
  _expect(fn, kwargs, exc, needles, jit=False)
  if jit and fn != "noisy_batch_norm":
    _expect(fn, kwargs, exc, needles, jit=True)  # raised while tracing, before anything runs


def test_bad_input_count():
  """The number of bad inputs tried (reported in the issue's closing note)."""
  assert len(CASES) >= 300, len(CASES)


@pytest.mark.parametrize("fn", sorted(SINGLE))
def test_allow_single_value_lets_it_through(fn):
  kw = {"x": SINGLE[fn], "allow_single_value": True}
  if fn == "ghost_batch_norm":
    kw["virtual_batch_size"] = 1
  y = jax.jit(lambda x: CALLS[fn](**{**kw, "x": x}))(kw["x"])
  assert y.shape == SINGLE[fn].shape and bool(jnp.all(jnp.isfinite(y)))


def test_single_value_counts_devices():
  """Under shard_map over 2 devices a (1, C) shard has 2 values per channel: allowed; one device is not."""
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("d",))
  spec = jax.sharding.PartitionSpec("d")
  f = jax.jit(jax.shard_map(lambda x: nl.batch_norm(x, axis_name="d"), mesh=mesh, in_specs=spec,
                            out_specs=spec))
  y = f(jnp.asarray([[1.0, 2.0], [3.0, 5.0]]))
  np.testing.assert_allclose(np.asarray(y), [[-1.0, -1.0], [1.0, 1.0]], atol=1e-4)
  mesh1 = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("d",))
  g = jax.jit(jax.shard_map(lambda x: nl.batch_norm(x, axis_name="d"), mesh=mesh1, in_specs=spec,
                            out_specs=spec))
  with pytest.raises(SingleValueError, match="1 value per channel"):
    g(jnp.ones((1, 2)))


def test_valid_edge_inputs_still_pass():
  """What is allowed stays allowed: every float dtype, numeric 0/1 masks, broadcastable parameters,
  running statistics with extra 1s, eval mode on one example."""
  # jax.eval_shape traces (so every check runs) without compiling anything
  shape = lambda f, *a: jax.eval_shape(f, *a)  # noqa: E731
  for dt in (jnp.bfloat16, jnp.float16, jnp.float32, jnp.float64):
    assert shape(lambda x: nl.batch_norm(x, jnp.ones((1, 1, C)), jnp.zeros(1)), X.astype(dt)).dtype == dt
  m = jnp.asarray([1.0, 0.0, 1.0, 1.0]).reshape(N, 1, 1)
  both = jax.jit(lambda x, m: (nl.batch_norm(x, mask=m), nl.batch_norm(x, mask=m > 0)))(X, m)
  np.testing.assert_array_equal(*both)
  running = nl.Moments(jnp.zeros((1, C)), jnp.ones((C, 1)))
  assert shape(lambda x: nl.batch_norm(x, running=running), X[:1, :1]).shape == (1, 1, C)
  assert shape(lambda x: nl.layer_norm(x, jnp.ones((T, C)), reduction_axes=(1, 2)), X).shape == X.shape
  assert shape(lambda x: nl.layer_norm(x, jnp.ones(C), reduction_axes=1), X).shape == X.shape


def test_update_running_stats_checks_shapes_and_momentum():
  for bad, exc, needle in ((nl.Moments(jnp.zeros(C + 1), jnp.ones(C + 1)), ValueError, "batch.mean"),
                           (jnp.zeros(C), TypeError, "Moments"),
                           (nl.Moments(jnp.zeros(C, jnp.int32), jnp.ones(C)), TypeError, "int32")):
    with pytest.raises(exc, match=needle):
      nl.update_running_stats(RUNNING, bad)
  for momentum in (1.5, -0.1, "0.9", True):
    with pytest.raises(ValueError, match="momentum"):
      nl.update_running_stats(RUNNING, RUNNING, momentum)


def test_moments_and_standardize_refuse_integer_input():
  for f in (lambda x: nl.moments(x, (0,)), lambda x: nl.standardize(x, (0,), eps=1e-5)):
    with pytest.raises(TypeError, match="int32"):
      f(jnp.ones((4, 3), jnp.int32))


ARRAY_CHECKS = ("check_x", "check_param", "check_running", "check_mask_array", "check_mask",
                "check_batch_values")


@pytest.mark.parametrize("norm", ["batch", "lp_batch"])
def test_checks_add_nothing_to_the_compiled_train_step(norm, monkeypatch):
  """The checks read shapes and dtypes while tracing: a jitted train step lowers to the same program
  with them as with every array check replaced by a no-op."""
  import functools

  import optax

  from normlab import checks
  from normlab.models import get_model
  from normlab.registry import make_norm
  from normlab.train.state import create_state, init_variables
  from normlab.train.step import train_step

  name = "l1_batch" if norm == "lp_batch" else norm
  model = get_model("resnet", num_classes=10, norm=make_norm(name), stage_sizes=(1,),
                    block="basic", stem="cifar", widths=(4,))
  x = np.random.default_rng(0).standard_normal((8, 8, 8, 3)).astype(np.float32)
  batch = {"x": jnp.asarray(x), "y": jnp.zeros(8, jnp.int32)}
  tx = optax.sgd(0.1, momentum=0.9)
  state = create_state(init_variables(model, x, seed=0), tx)

  def lowered_text():
    step = jax.jit(functools.partial(train_step, apply_fn=model.apply, tx=tx, schedule=lambda s: 0.1,
                                     num_classes=10, seed=0, axis_name=None))
    return step.lower(state, batch).as_text()

  with_checks = lowered_text()
  for fn in ARRAY_CHECKS:
    monkeypatch.setattr(checks, fn, lambda *a, **k: None)
  assert lowered_text() == with_checks
