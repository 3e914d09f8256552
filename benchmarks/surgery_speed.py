"""Does channel surgery turn FLOPs savings into wall-clock speed? Masked vs sliced forward.

For VGG-16 and ResNet-56 (CIFAR: 32x32, 10 classes) and masks removing 30/50/70% of the
MACs, times the jitted forward of the masked full model and of the sliced model side by
side (batch 1 and 128, median of repeats) and writes a markdown table.

Masks: every channel space (residual streams as a whole) closes the same fraction of its
channels (its last ones: timing does not depend on which); the fraction is bisected until
the physically realised MACs hit the target.

    python benchmarks/surgery_speed.py [--conv_impl=auto] [--out=benchmarks/results/surgery_speed.md]
"""
from __future__ import annotations

import os
import platform
import statistics
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import costs, masks, models, surgery

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["vgg16", "resnet56"], "Zoo models to time.")
flags.DEFINE_list("targets", ["0.3", "0.5", "0.7"], "Fractions of MACs to remove.")
flags.DEFINE_list("batch_sizes", ["1", "128"], "Batch sizes to time.")
flags.DEFINE_integer("repeats", 7, "Timed calls per measurement (median reported).")
flags.DEFINE_string("conv_impl", "auto", "Conv implementation: xla | im2col | auto.")
flags.DEFINE_string("out", "benchmarks/results/surgery_speed.md", "Markdown file to write.")


def uniform_mask(graph, fraction: float):
  """Closes the last round(fraction * C) channels of every space (at all its gate points)."""
  mask = {}
  for points in masks.spaces(graph.gates).values():
    c = points[0].channels
    closed = min(c - 1, int(round(fraction * c)))
    gate = np.ones(c, np.float32)
    gate[c - closed:] = 0.0
    for p in points:
      mask[p.key] = jnp.asarray(gate)
  return mask


def mask_for_target(model, target: float):
  """(mask, realised MAC reduction): bisects the uniform fraction to remove ``target`` of MACs."""
  graph = models.describe(model)
  full = costs.count(graph).macs
  lo, hi = 0.0, 1.0
  for _ in range(30):
    mid = (lo + hi) / 2
    saved = 1 - costs.count(graph, uniform_mask(graph, mid), "physical").macs / full
    lo, hi = (mid, hi) if saved < target else (lo, mid)
  mask = uniform_mask(graph, hi)
  return mask, 1 - costs.count(graph, mask, "physical").macs / full


def time_forward(model, variables, mask, batch: int, repeats: int) -> float:
  """Median seconds of one jitted forward pass (compiled and warmed up first)."""
  fwd = jax.jit(lambda v, x, m: models.apply(model, v, x, m))
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, model.image_size, model.image_size,
                                                 model.input_channels))
  fwd(variables, x, mask).block_until_ready()
  fwd(variables, x, mask).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fwd(variables, x, mask).block_until_ready()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def main(argv):
  del argv
  batches = [int(b) for b in FLAGS.batch_sizes]
  load_before = os.getloadavg()
  rows = []
  for name in FLAGS.models:
    model = models.create(name, num_classes=10, image_size=32, conv_impl=FLAGS.conv_impl)
    variables = models.init(model, jax.random.PRNGKey(0))
    full_macs = costs.count(model).macs
    for target in (float(t) for t in FLAGS.targets):
      mask, saved = mask_for_target(model, target)
      small, small_vars, rest = surgery.slice_model(model, variables, mask)
      small_macs = costs.count(small).macs
      row = dict(model=name, target=target, saved=saved, ratio=full_macs / small_macs)
      for b in batches:
        masked = time_forward(model, variables, mask, b, FLAGS.repeats)
        sliced = time_forward(small, small_vars, rest, b, FLAGS.repeats)
        row[b] = (masked, sliced)
        print(f"{name} -{target:.0%} batch {b}: masked {masked * 1e3:.1f} ms, sliced "
              f"{sliced * 1e3:.1f} ms, speedup {masked / sliced:.2f}x (MACs ratio {row['ratio']:.2f})",
              flush=True)
      rows.append(row)
  load_after = os.getloadavg()
  write_table(rows, batches, load_before, load_after)


def write_table(rows, batches, load_before, load_after):
  head = ["model", "MACs removed (target)", "FLOPs ratio full/sliced"]
  for b in batches:
    head += [f"masked ms @{b}", f"sliced ms @{b}", f"speedup @{b}"]
  head += [f"speedup / FLOPs ratio @{b}" for b in batches]
  lines = ["# Channel surgery: masked full model vs sliced model (jitted forward, CPU)", "",
           f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python benchmarks/surgery_speed.py "
           f"--conv_impl={FLAGS.conv_impl}`; jax {jax.__version__}, backend {jax.default_backend()}, "
           f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}). Median of "
           f"{FLAGS.repeats} calls after 2 warm-up calls. CIFAR shapes: 32x32x3, 10 classes.", "",
           f"**Shared machine**: other agents were using the same cores (load average "
           f"{load_before[0]:.1f} before, {load_after[0]:.1f} after the run), so absolute times are "
           f"noisy; masked and sliced are timed back to back to keep the comparison fair.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    cells = [r["model"], f"{r['saved']:.1%} ({r['target']:.0%})", f"{r['ratio']:.2f}"]
    for b in batches:
      m, s = r[b]
      cells += [f"{m * 1e3:.1f}", f"{s * 1e3:.1f}", f"{m / s:.2f}x"]
    cells += [f"{r[b][0] / r[b][1] / r['ratio']:.2f}" for b in batches]
    lines.append("| " + " | ".join(cells) + " |")
  os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
  with open(FLAGS.out, "w") as f:
    f.write("\n".join(lines) + "\n")
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
