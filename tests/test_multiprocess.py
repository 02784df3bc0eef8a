"""Two JAX processes on localhost (jax.distributed + gloo CPU collectives), 2 fake CPU devices each:
shard_map'd SyncBN over the 4-device global mesh equals the single-process full-batch result."""
import os
import socket
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import normlab as nl

import helpers_multiprocess as H
import references as R

pytestmark = pytest.mark.usefixtures("float64")  # float64 references (tests/conftest.py)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)
TIMEOUT_S = 120


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_workers(out_dir):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # the worker sets its own device count
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, os.path.join(TESTS_DIR, "helpers_multiprocess.py"), str(i), str(port),
                               str(out_dir)], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for i in range(H.N_PROCESSES)]
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=TIMEOUT_S)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        logs = [p.communicate()[0] for p in procs]
        pytest.fail(f"2-process SyncBN timed out after {TIMEOUT_S}s; logs:\n" + "\n---\n".join(logs[-2:]))
    return [p.returncode for p in procs], outputs


def _gather(out_dir, name):
    parts = {}
    for i in range(H.N_PROCESSES):
        with np.load(os.path.join(out_dir, f"result_{i}.npz")) as z:
            for key in z.files:
                n, start = key.split("@")
                if n == name:
                    parts[int(start)] = z[key]
    return np.concatenate([parts[k] for k in sorted(parts)])


@pytest.mark.slow  # several seconds each: `pytest -m slow` runs it
def test_two_process_sync_bn_equals_single_process(tmp_path):
    codes, logs = _run_workers(tmp_path)
    if any(c == 3 for c in codes):
        reasons = [open(tmp_path / f).read() for f in os.listdir(tmp_path) if f.startswith("skip_")]
        pytest.skip("no CPU collectives: " + "; ".join(reasons))
    assert codes == [0, 0], "workers failed:\n" + "\n---\n".join(logs)

    x, ct, mask = H.global_inputs()
    scale, bias = np.array([0.5, 1.5, -1.0]), np.array([0.1, -0.2, 0.3])
    import jax
    y_single = nl.batch_norm(jnp.asarray(x), scale, bias)
    g_single = jax.grad(lambda x: jnp.sum(nl.batch_norm(x, scale, bias) * ct))(jnp.asarray(x))
    y_mp, ym_mp, g_mp = (_gather(tmp_path, n) for n in ("y", "y_masked", "grad"))
    assert y_mp.shape == x.shape and g_mp.shape == x.shape

    errs = {
        "values": float(np.max(np.abs(y_mp - np.asarray(y_single)))),
        "masked values (unequal counts)": float(np.max(np.abs(ym_mp - R.batch_norm(x, mask=mask)))),
        "grad wrt x": float(np.max(np.abs(g_mp - np.asarray(g_single)))),
    }
    print("2-process SyncBN max |err| vs single-process full batch: " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items()))
    for k, v in errs.items():
        assert v < 1e-12, k
    # per-process BN would differ: make sure the check has teeth
    half = R.batch_norm(x[: len(x) // 2], scale, bias)
    assert np.max(np.abs(half - y_mp[: len(x) // 2])) > 1e-2
