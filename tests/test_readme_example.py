"""The "use a norm in your own JAX model" example: README.md's python block marked `<!-- example:own-model -->`
runs and trains, and tests/readme_example.py's main() is that block."""
import inspect
import os
import re
import textwrap

import jax
import numpy as np
import pytest

import readme_example

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "<!-- example:own-model -->"
BLOCK = re.compile(re.escape(MARKER) + r"\s*```python\n(.*?)```", re.S)


def example_source():
    """README.md's python block marked MARKER (the test fails if there is none)."""
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        m = BLOCK.search(f.read())
    if m is None:
        pytest.fail(f"no python block marked {MARKER} in README.md")
    return m.group(1)


def _check_training(losses):
    losses = np.asarray(losses)
    assert losses.shape == (100,) and np.all(np.isfinite(losses))
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


# The example draws its init/data with jax.random; the tests run it under the "rbg" PRNG, which compiles
# several times faster than threefry on CPU (the code and what it checks are unchanged).
PRNG = "rbg"


def test_readme_example_block_runs_and_trains():
    ns = {"__name__": "readme_example_block"}
    with jax.default_prng_impl(PRNG):
        exec(compile(example_source(), "<README.md example:own-model>", "exec"), ns)  # noqa: S102 - our own README
    print(f"README.md example: loss {ns['losses'][0]:.4f} -> {ns['losses'][-1]:.4f}")
    _check_training(ns["losses"])


def test_readme_example_main():
    with jax.default_prng_impl(PRNG):
        _check_training(readme_example.main())


def test_readme_example_block_matches_main():
    """README.md's block is main()'s body (without its return): the two cannot drift."""
    src = inspect.getsource(readme_example.main)
    body = textwrap.dedent("\n".join(src.splitlines()[1:]))
    body = body[:body.rindex("return losses")].rstrip() + "\n"
    assert example_source() == body
