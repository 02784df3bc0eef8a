"""Worker for tests/test_multiprocess.py (not a test module): one of 2 JAX processes on localhost.

    python tests/helpers_multiprocess.py PROCESS_ID PORT OUT_DIR

Each process owns 2 fake CPU devices; together they form a 4-device global mesh ("batch",). The worker
runs a shard_map'd SyncBN (values, masked statistics and the input gradient) on the global batch and
writes its addressable shards to OUT_DIR/result_<id>.npz. Exit code 3 + OUT_DIR/skip_<id>.txt means
the platform lacks CPU collectives (the test skips with that reason).
"""
import os
import sys

LOCAL_DEVICES = 2
N_PROCESSES = 2
N, C = 16, 3


def global_inputs():
    import numpy as np
    rng = np.random.default_rng(42)
    x = rng.normal(size=(N, 2, C)) * 1.3 + 0.7
    ct = rng.normal(size=(N, 2, C))
    # unequal valid counts per device: device d (of 4) keeps d + 1 of its 4 examples
    per = N // (LOCAL_DEVICES * N_PROCESSES)
    mask = np.concatenate([np.arange(per) < d + 1 for d in range(LOCAL_DEVICES * N_PROCESSES)])
    return x, ct, mask.astype(np.float64)[:, None, None]


def main(pid: int, port: int, out_dir: str) -> int:
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={LOCAL_DEVICES}"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    def skip(reason):
        with open(os.path.join(out_dir, f"skip_{pid}.txt"), "w") as f:
            f.write(reason)
        return 3

    try:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except Exception as e:  # noqa: BLE001 - any failure here means: no CPU collectives on this platform
        return skip(f"jax {jax.__version__} has no gloo CPU collectives: {e!r}")
    jax.config.update("jax_enable_x64", True)
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=N_PROCESSES,
                               process_id=pid, initialization_timeout=60)
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    import normlab as nl

    assert jax.process_count() == N_PROCESSES and jax.device_count() == LOCAL_DEVICES * N_PROCESSES
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    sharding = NamedSharding(mesh, P("batch"))
    x, ct, mask = global_inputs()
    rows = slice(pid * N // N_PROCESSES, (pid + 1) * N // N_PROCESSES)

    def put(a):
        return jax.make_array_from_process_local_data(sharding, a[rows], a.shape)

    gx, gct, gmask = put(x), put(ct), put(mask)
    scale, bias = jnp.asarray([0.5, 1.5, -1.0]), jnp.asarray([0.1, -0.2, 0.3])

    bn = jax.shard_map(lambda x, s, b: nl.batch_norm(x, s, b, axis_name="batch"), mesh=mesh,
                       in_specs=(P("batch"), P(), P()), out_specs=P("batch"))
    bn_masked = jax.shard_map(lambda x, m: nl.batch_norm(x, axis_name="batch", mask=m), mesh=mesh,
                              in_specs=(P("batch"), P("batch")), out_specs=P("batch"))
    y = jax.jit(bn)(gx, scale, bias)
    y_masked = jax.jit(bn_masked)(gx, gmask)
    grad = jax.jit(jax.grad(lambda x, ct: jnp.sum(bn(x, scale, bias) * ct)))(gx, gct)

    out = {}
    for name, arr in (("y", y), ("y_masked", y_masked), ("grad", grad)):
        for shard in arr.addressable_shards:
            start = shard.index[0].start or 0
            out[f"{name}@{start}"] = np.asarray(shard.data)
    np.savez(os.path.join(out_dir, f"result_{pid}.npz"), **out)
    jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
