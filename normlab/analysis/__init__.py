"""Measurement machinery for the Santurkar et al. (2018) studies (issue 7).

capture    per-layer activations (pre/post norm) and gradients w.r.t. them and the kernels
ics        internal covariate shift (their section 2.2), exact, per layer
landscape  loss / gradient along the gradient direction, effective beta-smoothness (section 3.1)
theory     numeric checks of section 4: BN gradient, Theorems 4.1 and 4.2, the initialization lemma
training   normlab.train's loop in memory with measurement hooks, for the studies in experiments/
plateau    the fixed-subset training loss at the end of every tenth (the studies' convergence measure), a hook
probes     test metrics in both modes, norm-layer outputs, clean running statistics, distribution drift

(`capture.capture(...)` is the one-off function; the package exports `make_capture`, so that the
name `normlab.analysis.capture` stays the module.)
"""
from normlab.analysis.capture import Capture, make_capture, module_call_order
from normlab.analysis.ics import ICS, ics_step, internal_covariate_shift
from normlab.analysis.landscape import Landscape, along_gradient

__all__ = ["Capture", "make_capture", "module_call_order", "ICS", "ics_step",
           "internal_covariate_shift", "Landscape", "along_gradient"]
