"""GRU / LSTM + layer norm on MNIST-1D read as a sequence (40 steps of 1 value).

Run:  python scripts/train.py --config=configs/rnn.py:cpu --workdir=/tmp/gru
Presets (2 CPU cores unless noted):
  smoke  GRU with 16 units, 60 steps: ~15 s; accuracy meaningless.
  cpu    GRU with 128 units and layer norm, 3000 steps: test accuracy ~90% (MNIST-1D paper's GRU:
         91%) in a few minutes.
  lstm   the same with an LSTM cell.
  gpu    GRU with 256 units, batch 256, 10000 steps.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # loaded by file path (config_flags, the sweep): make `configs` importable
  sys.path.insert(0, _ROOT)
from configs import common  # noqa: E402

PRESETS = {
    "smoke": {"model_options.hidden": 16, "batch_size": 64, "num_steps": 60, "warmup_steps": 10, "eval_every": 60,
              "log_every": 20, "checkpoint_every": 30},
    "cpu": {},
    "lstm": {"model": "lstm"},
    "gpu": {"model_options.hidden": 256, "batch_size": 256, "num_steps": 10000, "eval_every": 1000,
            "log_every": 200, "checkpoint_every": 2000},
}


def get_config(arg=None):
  c = common.get_base_config()
  c.model = "gru"
  c.model_options.hidden = 128
  c.norm = "layer"
  c.dataset = "mnist1d"
  c.batch_size = 128
  c.optimizer = "adamw"
  c.learning_rate = 3e-3
  c.weight_decay = 1e-4
  c.grad_clip_norm = 1.0
  c.schedule = "warmup_cosine"
  c.warmup_steps = 50
  c.num_steps = 1000
  c.eval_every = 250
  c.log_every = 50
  c.checkpoint_every = 500
  return common.with_preset(c, PRESETS, arg, "configs/rnn.py")
