"""Pruned vs unpruned forward latency of a pruning job's models, under two conv dispatch rules.

Loads the unpruned model (WORKDIR/train/model) and each variant's pruned model
(WORKDIR/<variant>/pruned, e.g. a White-Box job's whitebox, l1, shared, hard) and times every
forward in one process, alternating (`toolkit.latency.time_calls`), twice: with `jaxdr.ops.conv`'s
rules as they are, and without its two small-layer rules (`taps.MAX_TAPS` = 0: one-channel
first layers as a conv; `conv.SMALL_MAP_IM2COL_MAX_PIXELS` = 0: narrow stride-1 convs on maps up
to 4x4 by lax.conv). Reports ms, the speedup over the unpruned model and its ratio to the
model's MACs reduction factor (exact counts from `costs`).

    python benchmarks/pruned_latency.py --workdir=/tmp/whitebox_fmnist \
        --variants=whitebox,l1,shared,hard [--batch_sizes=128,1] [--out=...]
"""
from __future__ import annotations

import datetime
import os
import sys

from absl import app, flags
import jax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxdr import checkpoints, costs, cpu_runtime, reporting  # noqa: E402
from jaxdr.ops import conv, native_conv, taps  # noqa: E402
from jaxdr.toolkit import latency  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A pruning job's workdir (train/model and <variant>/pruned).")
flags.DEFINE_list("variants", ["whitebox", "l1", "shared", "hard"], "Pruned models to time.")
flags.DEFINE_list("batch_sizes", ["128", "1"], "Batch sizes.")
flags.DEFINE_string("conv_impl", "native", "conv_impl of every model.")
flags.DEFINE_integer("repeats", 60, "Timed rounds (median); batch 1 runs 5x as many.")
flags.DEFINE_string("out", "benchmarks/results/pruned_latency.md", "Markdown file to write.")
flags.mark_flag_as_required("workdir")

RULES = {"current": (taps.MAX_TAPS, conv.SMALL_MAP_IM2COL_MAX_PIXELS), "without small-layer rules": (0, 0)}


def main(argv):
  del argv
  cpu_runtime.ensure_allocator("tcmalloc")
  if FLAGS.conv_impl == "native":
    native_conv.load()
  paths = {"unpruned": os.path.join(FLAGS.workdir, "train", "model")}
  paths.update({v: os.path.join(FLAGS.workdir, v, "pruned") for v in FLAGS.variants})
  loaded = {name: checkpoints.load_model(p, conv_impl=FLAGS.conv_impl) for name, p in paths.items()}
  macs = {name: int(costs.count(m).macs) for name, (m, _) in loaded.items()}
  rows = []
  for batch in (int(b) for b in FLAGS.batch_sizes):
    calls = {}
    for rule, (max_taps, small_map) in RULES.items():
      taps.MAX_TAPS, conv.SMALL_MAP_IM2COL_MAX_PIXELS = max_taps, small_map
      for name, (model, variables) in loaded.items():
        call = latency.forward(model, variables, None, batch)
        jax.block_until_ready(call())  # traced and compiled under this rule
        calls[(rule, name)] = call
    taps.MAX_TAPS, conv.SMALL_MAP_IM2COL_MAX_PIXELS = RULES["current"]
    repeats = FLAGS.repeats * (5 if batch == 1 else 1)
    med = latency.time_calls(calls, repeats)
    for rule in RULES:
      base = med[(rule, "unpruned")]
      for name in loaded:
        t = med[(rule, name)]
        factor = macs["unpruned"] / macs[name]
        rows.append(f"| {batch} | {rule} | {name} | {1e3 * t:.3f} | {base / t:.3f} | {factor:.3f} | "
                    f"{base / t / factor:.3f} |")
        print(rows[-1], flush=True)
  text = "\n".join([
      "# Pruned vs unpruned forward latency, with and without the small-layer conv rules", "",
      f"Run {datetime.date.today().isoformat()}: `python {' '.join(sys.argv)}`", "",
      f"- CPU: {cpu_runtime.cpu_model()}; jax {jax.__version__}; {cpu_runtime.describe()}",
      f"- conv_impl {FLAGS.conv_impl}; median of {FLAGS.repeats} alternating rounds (batch 1: "
      f"{5 * FLAGS.repeats}), every model under both rules in one loop", "",
      "| batch | conv rules | model | ms | speedup | MACs factor | speedup / MACs factor |",
      "|---|---|---|---|---|---|---|", *rows, ""])
  reporting.write_text_atomic(FLAGS.out, text)
  print(text)


if __name__ == "__main__":
  app.run(main)
