"""The seed claims no other study covers (seeds 000 and 002): small measurements on MNIST-1D MLPs.

Run:  python -m experiments.seed_claims --preset=cpu --workdir=/tmp/seed_claims
Parts (experiments/seed_claims.py): batch_gen, init_scale (+ gamma/sigma of the trained BN nets), ghost,
gn_groups, grad_scale, in_vs_bn, weight_grad; `parts` selects them.
Presets: smoke (tiny widths, a few steps, 2 seeds, ~20 compiles: ~2 min on 2 idle CPU cores, more when loaded), cpu (MLPs on MNIST-1D, 3
seeds: ~15 core-min estimated from pilots' CPU time), gpu (wider and longer, 5 seeds; MNIST-1D is embedded, so no TFDS
directory is needed).
"""

import ml_collections as mlc

from configs.experiments import _common


def get_config(arg=None):
  c = _common.study_config(arg, "configs/experiments/seed_claims.py")
  preset = c.preset
  c.parts = ("batch_gen", "init_scale", "ghost", "gn_groups", "grad_scale", "in_vs_bn", "weight_grad")
  c.seeds = (0, 1, 2)
  c.train_examples = 4000  # MNIST-1D's training split
  c.warmup_frac = 0.05
  c.train = _common.train_defaults(model="mlp", model_options={"widths": (128, 128, 128)}, dataset="mnist1d",
                                   normalize_inputs=False, optimizer="momentum", learning_rate=0.05, batch_size=64,
                                   num_steps=2)
  # Budgets (chosen before the run, under the plateau rule of experiments/_study.py; pilots on one seed, fixed-subset
  # loss over the last two tenths). batch_gen unchanged: B=512 changed 0.5% (seed 2), B=16 ends at ~0.004 nats.
  c.batch_gen = mlc.ConfigDict({"batch_sizes": (16, 512), "epochs": 30.0, "learning_rate": 0.02})
  c.init_scale = mlc.ConfigDict({"norms": ("none", "batch"), "scales": (0.25, 1.0, 4.0),
                                 "widths": (128, 128, 128, 128), "num_steps": 9000})
  # init_scale 1500 -> 9000 steps: at 1500 every trained cell still fell 5-34%; BN x0.25 0.0087 -> 0.0056 at 7500
  # (seed 2), 0.033 -> 0.025 at 4500 (seed 0); BN x4.0 0.0120 -> 0.0107 at 7500; none x0.25 0.0037 -> 0.0031 at 4500.
  c.ghost = mlc.ConfigDict({"batch_size": 256, "virtual": (8, 256), "num_steps": 1000})
  # ghost unchanged (1000 steps): virtual 8 changed 1.9% (seed 2, the old report's slowest), a thin margin; longer
  # budgets do not help (3.4% at 2000, 3.0% at 3000, 3.2% at 8000: it memorizes slowly), virtual 256 ends < 0.01 nats.
  c.gn_groups = mlc.ConfigDict({"widths": (64, 64, 64), "group_sizes": (2, 8, 64), "num_steps": 4500})
  # gn_groups 1500 -> 4500 steps: at 1500 the trained cells still fell 14-17%; at 4500 (seed 0) 8 per group
  # 0.0075 -> 0.0070, no norm 0.0021 -> 0.0020 nats; 2 per group stays at chance (2.3026).
  c.grad_scale = mlc.ConfigDict({"norms": ("none", "batch", "layer"), "scales": (0.5, 1.0, 2.0), "depth": 16,
                                 "width": 128, "batch": 256})
  c.in_vs_bn = mlc.ConfigDict({"length": 20, "channels": 16, "others": 64})
  c.weight_grad = mlc.ConfigDict({"trials": 200, "m": 32, "dim": 8, "random_x": 20, "ratio_range": (0.1, 3.0)})
  if preset == "smoke":
    c.seeds = (0, 1)
    c.train.model_options.widths = (16, 16)
    c.batch_gen.update({"batch_sizes": (16, 64), "epochs": 0.5})
    c.init_scale.update({"widths": (16, 16), "scales": (1.0, 4.0), "num_steps": 20})
    c.ghost.update({"batch_size": 32, "virtual": (8, 32), "num_steps": 20})
    c.gn_groups.update({"widths": (16, 16), "group_sizes": (2, 16), "num_steps": 20})
    c.grad_scale.update({"depth": 4, "width": 16, "batch": 32})
    c.weight_grad.update({"trials": 8, "random_x": 3})
  elif preset == "gpu":
    c.seeds = (0, 1, 2, 3, 4)
    c.train.model_options.widths = (512, 512, 512)
    c.batch_gen.epochs = 100.0
    c.init_scale.update({"widths": (512,) * 6, "scales": (0.1, 0.3, 1.0, 3.0, 10.0), "num_steps": 6000})
    c.ghost.num_steps = 4000
    c.gn_groups.update({"widths": (256, 256, 256), "group_sizes": (2, 8, 32, 256), "num_steps": 6000})
    c.grad_scale.update({"depth": 32, "width": 512, "scales": (0.5, 0.8, 1.0, 1.25, 2.0)})
    c.weight_grad.trials = 2000
  return c
