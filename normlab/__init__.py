"""normlab: pure-functional normalization layers on jax.lax reductions (no Flax needed here).

Every activation norm standardizes over a reduction set S (axes + device axis names + mask) with one
core, `normlab.core`: `moments`, `standardize` and `standardize_affine` (standardize, then scale/shift,
with one closed-form derivative). The functions exported here (`normlab.norms`, `normlab.variants`)
are the math every layer runs. The flax modules (`normlab.layers` for linen, `normlab.nnx`) and the
name -> layer factory (`normlab.registry`) import flax; this package does not.
"""
from normlab.core import Moments, moments, standardize
from normlab.norms import (batch_norm, group_norm, instance_norm, layer_norm, rms_norm,
                           update_running_stats)
from normlab.reparam import spectral_normalize, weight_norm, weight_norm_data_init, weight_standardize
from normlab.variants import (batch_renorm, evonorm_b0, evonorm_s0, filter_response_norm,
                              frozen_batch_norm, ghost_batch_norm, local_response_norm, lp_batch_norm,
                              noisy_batch_norm, switchable_norm)

__all__ = [
    "Moments", "moments", "standardize", "batch_norm", "update_running_stats", "layer_norm", "rms_norm",
    "instance_norm", "group_norm", "ghost_batch_norm", "batch_renorm", "frozen_batch_norm",
    "lp_batch_norm", "noisy_batch_norm", "filter_response_norm", "evonorm_b0", "evonorm_s0",
    "switchable_norm", "local_response_norm", "weight_norm", "weight_norm_data_init",
    "weight_standardize", "spectral_normalize",
]
__version__ = "0.1.0"
