"""S vmapped seeds vs S sequential runs, smoke-size batch_size cells (ResNet-1D (1,1) 8/16 ch, mnist1d)."""
import sys, time, json, logging, os  # run: python experiments/results/batch_size/vmap_speedup.py
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
logging.getLogger("absl").setLevel(logging.WARNING)
from normlab import sweep
from configs.sweeps import _common
from normlab.train import train_and_evaluate, train_and_evaluate_seeds
root = f"/tmp/normlab_vmap_speedup_{int(time.time())}"
out = []
for bs, S in ((4, 2), (32, 2), (4, 4)):
  s = sweep.load_config_file("configs/sweeps/batch_size.py:smoke")
  s.grid.variant = ("BN",); s.grid.batch_size = (bs,); s.grid.seed = tuple(range(S))
  cells = sweep.expand(s)
  t = time.perf_counter()
  seq = [train_and_evaluate(c.config, f"{root}/seq_{bs}_{S}_{i}") for i, c in enumerate(cells)]
  t_seq = time.perf_counter() - t
  t = time.perf_counter()
  vm = train_and_evaluate_seeds([c.config for c in cells], [f"{root}/vm_{bs}_{S}_{i}" for i in range(S)])
  t_vm = time.perf_counter() - t
  r = {"batch": bs, "seeds": S, "steps": cells[0].config.num_steps, "sequential_s": round(t_seq, 1), "vmapped_s": round(t_vm, 1),
       "speedup": round(t_seq / t_vm, 2), "seq_compile_s": round(sum(x["compile_time_s"] for x in seq), 1),
       "vm_compile_s": round(vm[0]["compile_time_s"], 1), "seq_train_s": round(sum(x["train_time_s"] for x in seq), 2),
       "vm_train_s": round(vm[0]["train_time_s"], 2),
       "max_rel_diff_final_loss": max(abs(a["final_train_loss"] - b["final_train_loss"]) / abs(a["final_train_loss"]) for a, b in zip(seq, vm))}
  print(json.dumps(r), flush=True)
  out.append(r)
