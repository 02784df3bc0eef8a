"""Synthetic Gaussian data with a linear softmax teacher, for the deep linear network (DLN) of the ICS study.

    data = GaussianTeacher(dim=40, num_classes=10, scale=3.0, seed=1234)
    batches = data.batches(run_seed=0, batch_size=128)   # step -> {'x': (B, dim, 1), 'y': (B,)}
    data.bayes_loss()                                     # the teacher's own expected cross-entropy

x ~ N(0, I_dim); the label is drawn from softmax(x @ A), A a fixed Gaussian matrix (entries N(0, scale^2 / dim)).
The best predictor is linear (the teacher's logits), so a DLN can reach the Bayes loss: the task can be
learned, unlike mnist1d, where a linear model stops at ~1.85. Every step draws a fresh batch (a function of
(run_seed, step) only), so the training loss is an unbiased estimate of the population loss.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class GaussianTeacher:
  dim: int = 40
  num_classes: int = 10
  scale: float = 3.0
  seed: int = 1234

  def __post_init__(self):
    for name in ("dim", "num_classes"):
      if int(getattr(self, name)) < 1 or (name == "num_classes" and self.num_classes < 2):
        raise ValueError(f"GaussianTeacher: {name} must be a positive count (num_classes >= 2), got "
                         f"{getattr(self, name)!r}")

  @property
  def teacher(self) -> np.ndarray:
    rng = np.random.default_rng(self.seed)
    return rng.normal(size=(self.dim, self.num_classes)) * (self.scale / np.sqrt(self.dim))

  def probabilities(self, x: np.ndarray) -> np.ndarray:
    logits = x @ self.teacher
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)

  def sample(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    x = rng.normal(size=(n, self.dim))
    p = self.probabilities(x)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return {"x": x.astype(np.float32)[..., None], "y": y.astype(np.int32)}

  def batches(self, run_seed: int, batch_size: int) -> Callable[[int], dict]:
    """step -> a fresh batch drawn from the (teacher seed, run seed, step) stream."""
    def batch(step: int) -> dict[str, np.ndarray]:
      return self.sample(np.random.default_rng([self.seed, int(run_seed), int(step)]), int(batch_size))
    return batch

  def bayes_loss(self, n: int = 200_000) -> float:
    """The teacher's expected entropy (Monte Carlo over n inputs): the lowest achievable mean loss."""
    p = self.probabilities(np.random.default_rng([self.seed, 10**6]).normal(size=(n, self.dim)))
    return float(-(p * np.log(np.maximum(p, 1e-30))).sum(1).mean())
