"""Where does DMNN's batch-1 skip path lose to its FLOPs? The gap to a static network, in parts.

`dmnn_speed.py` compares skip-compute with the all-on network; this splits skip's distance
from the ideal (a network built for one fixed path) into what deciding costs. All variants run
the same trained network on the same test images, one image per step of one jitted `lax.map`
(the network's own latency, no per-call dispatch), alternating, median of ``--repeats``:

  all-on             every sub-block, no conditionals (the reference of the FLOPs ratio);
  all-on, conds      skip dispatch with every gate forced on by a traced mask: the same work
                     inside the dispatch's conditionals (minus all-on = their cost when every
                     sub-block runs);
  static path        each block's most common path as a constant mask (no controllers, no
                     conditionals: a network pruned to that path);
  static + ctrl      the same, with the controllers computed (their logits returned: the
                     gates are the mask's, so returning those would leave them dead code);
  path, conds        skip dispatch with that path as a traced mask (conditionals, no
                     controllers);
  skip               skip dispatch, gates from the trained controllers (what is deployed).

Also timed, per call: a jitted function that does no work (``2 * image``) taking the model's
variables as arguments, and the same taking the image only: what passing the weight arrays
costs a call before any network runs (the "weights as arguments" rows of `dmnn_speed.py`).

Each thread count runs in its own process (XLA sizes its pools by the CPU affinity at start),
one after the other in this run. Writes markdown with the CPU model (``lscpu``).

    python benchmarks/dmnn_overheads.py --model_dir=/tmp/dmnn [--threads=1,2] [--out=...]
"""
from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxdr import cpu_runtime, reporting  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "/tmp/dmnn", "Workdir of a trained `dmnn` run (or its model/ folder).")
flags.DEFINE_string("dataset", "fashion_mnist", "Dataset of the test images.")
flags.DEFINE_list("threads", ["1", "2"], "CPU counts to run on, each in its own process.")
flags.DEFINE_integer("images", 512, "Test images per pass (one `lax.map` step each).")
flags.DEFINE_integer("repeats", 9, "Timed passes per variant (median reported).")
flags.DEFINE_enum("conv_impl", "native", ["xla", "im2col", "auto", "native"], "How the convs run.")
flags.DEFINE_string("out", "benchmarks/results/dmnn_overheads.md", "Markdown file to write.")
flags.DEFINE_integer("worker_threads", 0, "Internal: run the timing on this many CPUs and print JSON.")

VARIANTS = ("all-on", "all-on, conds", "static path", "static + ctrl", "path, conds", "skip")


def _measure(threads: int) -> dict:
  """Median microseconds per image of every variant on ``threads`` CPUs (this process)."""
  cpus = sorted(os.sched_getaffinity(0))
  os.sched_setaffinity(0, cpus[:threads])  # before JAX's CPU client exists
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from jaxdr import data, masks, models  # pylint: disable=import-outside-toplevel
  from jaxdr.methods import dmnn as dmnn_method  # pylint: disable=import-outside-toplevel
  from jaxdr.methods.dmnn import evaluate  # pylint: disable=import-outside-toplevel
  from jaxdr.models import dmnn  # pylint: disable=import-outside-toplevel

  model, variables, table = dmnn_method.load(FLAGS.model_dir, conv_impl=FLAGS.conv_impl)
  variables = jax.device_put(variables)
  images, _ = data.as_arrays(FLAGS.dataset, "test", limit=FLAGS.images)
  xs = jnp.asarray(images)
  graph = models.describe(model)
  keys = [k for k, _ in graph.groups]
  fast = model.clone(dispatch="skip")
  gates = np.asarray(jax.jit(lambda x: dmnn.forward(model, variables, x)[1].gates)(xs))
  path = evaluate.modal_paths(gates)
  static = {k: jnp.asarray(path[i]) for i, k in enumerate(keys)}
  all_on = masks.ones_mask([graph.gate(k) for k, _ in graph.groups])

  def looped(fn, mask=None):
    """One jitted lax.map of ``fn(image [1, ...], mask)``; the mask, if any, is traced."""
    run = jax.jit(lambda xs, m: jax.lax.map(lambda x: fn(x[None], m), xs))
    return lambda: run(xs, mask)

  calls = {
      "all-on": looped(lambda x, m: models.apply(model, variables, x, all_on)),
      "all-on, conds": looped(lambda x, m: models.apply(fast, variables, x, m), dict(all_on)),
      "static path": looped(lambda x, m: models.apply(fast, variables, x, static)),
      "static + ctrl": looped(lambda x, m: (lambda o: (o[0], o[1].logits))(
          dmnn.forward(fast, variables, x, static))),
      "path, conds": looped(lambda x, m: models.apply(fast, variables, x, m), static),
      "skip": looped(lambda x, m: models.apply(fast, variables, x, None)),
  }
  for call in calls.values():
    jax.block_until_ready(call())
  x1 = xs[:1]
  no_work_args = jax.jit(lambda v, x: 2 * x)
  no_work = jax.jit(lambda x: 2 * x)
  per_call = {"no work, variables as arguments": lambda: no_work_args(variables, x1),
               "no work, image only": lambda: no_work(x1)}
  call_us = {k: [] for k in per_call}
  for _ in range(FLAGS.repeats):
    for k, call in per_call.items():
      jax.block_until_ready(call())
      start = time.perf_counter()
      for _ in range(200):
        jax.block_until_ready(call())
      call_us[k].append(1e6 * (time.perf_counter() - start) / 200)
  times = {k: [] for k in VARIANTS}
  for _ in range(FLAGS.repeats):
    for k in VARIANTS:
      start = time.perf_counter()
      jax.block_until_ready(calls[k]())
      times[k].append(1e6 * (time.perf_counter() - start) / len(images))
  return dict(threads=len(os.sched_getaffinity(0)), leaves=len(jax.tree.leaves(variables)),
              call_us={k: statistics.median(v) for k, v in call_us.items()},
              us={k: statistics.median(v) for k, v in times.items()},
              spread={k: (max(v) - min(v)) / statistics.median(v) for k, v in times.items()},
              flops_ratio=float(table.executed(gates).mean() / table.total_macs),
              path_ratio=float(table.executed(path[None]).mean() / table.total_macs),
              path_share=float(np.mean(np.all(gates == path[None], axis=(1, 2)))))


def main(argv):
  del argv
  cpu_runtime.ensure_allocator("tcmalloc")
  if FLAGS.worker_threads:
    print("RESULT " + json.dumps(_measure(FLAGS.worker_threads)), flush=True)
    return
  runs = []
  for t in (int(t) for t in FLAGS.threads):
    if not 1 <= t <= len(os.sched_getaffinity(0)):
      raise app.UsageError(f"--threads={t}: this process may use {len(os.sched_getaffinity(0))} CPUs")
    argv = [sys.executable, os.path.abspath(__file__), f"--worker_threads={t}"] + [
        f"--{name}={getattr(FLAGS, name)}" for name in
        ("model_dir", "dataset", "images", "repeats", "conv_impl")]
    print(f"timing on {t} CPU(s) ...", flush=True)
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    runs.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]))
  table = ["| CPUs | variant | us / image | vs all-on | spread |", "|---|---|---|---|---|"]
  parts = ["| CPUs | conds, every branch run | controllers | conds, one path | skip - static path |",
           "|---|---|---|---|---|"]
  for r in runs:
    us = r["us"]
    for k in VARIANTS:
      table.append(f"| {r['threads']} | {k} | {us[k]:.1f} | {us[k] / us['all-on']:.3f} | {r['spread'][k]:.2f} |")
    parts.append(f"| {r['threads']} | {us['all-on, conds'] - us['all-on']:+.1f} | "
                 f"{us['static + ctrl'] - us['static path']:+.1f} | {us['path, conds'] - us['static path']:+.1f} | "
                 f"{us['skip'] - us['static path']:+.1f} |")
  calls = ["| CPUs | call | us / call |", "|---|---|---|"]
  for r in runs:
    calls += [f"| {r['threads']} | {k} | {v:.1f} |" for k, v in r["call_us"].items()]
  r0 = runs[0]
  text = "\n".join([
      "# DMNN at batch 1: what deciding costs (skip vs a static network of the same path)",
      "",
      f"Run {datetime.date.today().isoformat()}: `python {' '.join(sys.argv)}`",
      "",
      f"- CPU: {cpu_runtime.cpu_model()}, {os.cpu_count()} CPUs; {cpu_runtime.describe()}",
      f"- model: `{FLAGS.model_dir}`, conv_impl {FLAGS.conv_impl}; {FLAGS.images} test images of "
      f"{FLAGS.dataset}, one per `lax.map` step; median of {FLAGS.repeats} passes (spread = (max - min) / median)",
      f"- executed-FLOPs ratio of these images {r0['flops_ratio']:.4f}; the static path's "
      f"{r0['path_ratio']:.4f} ({100 * r0['path_share']:.1f}% of the images take it)",
      "",
      *table,
      "",
      "Differences in microseconds per image:",
      "",
      *parts,
      "",
      f"Per call, a jitted function doing no work ({r0['leaves']} variable arrays):",
      "",
      *calls,
      ""])
  reporting.write_text_atomic(FLAGS.out, text)
  print(text)


if __name__ == "__main__":
  app.run(main)
