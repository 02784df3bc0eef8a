"""layers.BatchRenorm's ramp (Ioffe 2017): r_max/d_max grow from 1/0 (plain BN) to their values over ramp_steps."""
import jax
import jax.numpy as jnp
import numpy as np

from normlab import layers, norms, variants


def test_ramp_starts_as_batch_norm_and_counts_training_calls():
  x = jax.random.normal(jax.random.key(0), (8, 3)) * 2.0 + 1.0
  layer = layers.BatchRenorm(ramp_steps=4, use_running_average=False)
  v = layer.init(jax.random.key(1), x)
  v = {"params": v["params"], "batch_stats": {**v["batch_stats"], "mean": jnp.full(3, 5.0), "var": jnp.full(3, 9.0)}}
  y0, upd = layer.apply(v, x, mutable=["batch_stats"])
  np.testing.assert_allclose(y0, norms.batch_norm(x, jnp.ones(3), jnp.zeros(3), eps=1e-5), atol=1e-5)
  assert int(upd["batch_stats"]["renorm_steps"]) == 1
  v = {"params": v["params"], "batch_stats": {**upd["batch_stats"], "renorm_steps": jnp.asarray(4.0),
                                              "mean": jnp.full(3, 5.0), "var": jnp.full(3, 9.0)}}
  y_full, _ = layer.apply(v, x, mutable=["batch_stats"])
  running = norms.Moments(jnp.full(3, 5.0), jnp.full(3, 9.0))
  np.testing.assert_allclose(y_full, variants.batch_renorm(x, jnp.ones(3), jnp.zeros(3), running=running),
                             atol=1e-5)
  assert not np.allclose(y0, y_full)
