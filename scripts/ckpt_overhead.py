"""Times checkpoint save and restore with and without integrity digests on a preset's TrainState.

    python scripts/ckpt_overhead.py [--config=configs/resnet.py:cpu] [--repeats=7] [--dir=/tmp/ckpt_overhead]

Prints the state's size and the median save / restore (restore includes verification) times of
normlab.train.checkpoint.Checkpointer with digests on and off, and the digest alone.
"""
import argparse
import os
import shutil
import statistics
import time


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/resnet.py:cpu")
  parser.add_argument("--repeats", type=int, default=7)
  parser.add_argument("--dir", default="/tmp/ckpt_overhead")
  args = parser.parse_args()
  import jax

  from normlab import data
  from normlab.sweep.grid import load_config_file
  from normlab.train import distributed, optim, state as state_lib, step as step_lib
  from normlab.train.checkpoint import Checkpointer, tree_digest
  from normlab.train.build import build_model

  config = load_config_file(args.config)
  info = data.get_dataset_info(config.dataset)
  x = data.train_batch(data.load(config.dataset, "train"), config.batch_size, config.seed, 0, augment=False,
                       normalize_inputs=config.normalize_inputs)["x"]
  model = build_model(config, info.num_classes)
  variables = state_lib.init_variables(model, x, config.seed)
  mesh = distributed.make_mesh(1)
  state = jax.device_put(state_lib.create_state(variables, optim.make_optimizer(config)),
                         step_lib.state_sharding(mesh))
  print(f"{args.config}: {state_lib.tree_bytes(state) / 2**20:.2f} MiB in {len(jax.tree.leaves(state))} leaves; "
        f"{args.repeats} repeats, medians; {jax.devices()[0].device_kind}")
  t = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    tree_digest(state)
    t.append(time.perf_counter() - t0)
  print(f"digest alone: {1e3 * statistics.median(t):.1f} ms")
  for digests in (False, True):
    saves, restores = [], []
    for r in range(args.repeats):
      d = os.path.join(args.dir, f"{digests}-{r}")
      shutil.rmtree(d, ignore_errors=True)
      ck = Checkpointer(d, 2, digests=digests)
      t0 = time.perf_counter()
      ck.save(0, state)  # the step the state says it is at (restore checks it)
      saves.append(time.perf_counter() - t0)
      ck.close()
      ck = Checkpointer(d, 2, digests=digests)
      t0 = time.perf_counter()
      _, step = ck.restore_latest(state)
      jax.block_until_ready(_)
      restores.append(time.perf_counter() - t0)
      assert step == 0
      ck.close()
      shutil.rmtree(d)
    print(f"digests {'on ' if digests else 'off'}: save {1e3 * statistics.median(saves):.1f} ms, "
          f"restore {1e3 * statistics.median(restores):.1f} ms")


if __name__ == "__main__":
  main()
