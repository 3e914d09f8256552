"""Does DMNN's dynamic inference save real time? Skip-compute vs the same network all on.

Loads a trained DMNN (the saved model of a `dmnn` run, e.g. the default Fashion-MNIST job)
and times, in one run and alternating so load changes hit every variant alike, the jitted
forward of the same network (same variables) on real test images:

  all-on    every sub-block forced on (mask of ones): the static network the FLOPs ratio
            is relative to (the controllers are dead code there and compiled away);
  masked    the controllers decide, every sub-block is computed and multiplied by its gate
            (what ConvNet-AIG / SkipNet / BlockDrop run: nothing saved);
  skip      the controllers decide and only the sub-blocks whose gate is on run
            (`jaxdr.models.dispatch`: at batch 1 one switch per pair of sub-blocks over
            their on/off patterns; at larger batches
            the images whose gate is on are gathered into the smallest of ``--buckets``
            capacities, computed and put back);
  static path  the timed images' most common path of every block fixed in advance (a constant
            mask: XLA folds the conditionals away, no controllers run), a statically pruned
            network: the floor for skip, whose distance to it is the cost of deciding.

With ``--paths=random`` the controllers' decisions are replaced by per-image random gates
(a per-row mask [B, N]; each sub-block on with probability ``--random_rate``): a trained
network whose controllers route every image the same way never exercises the gather of the
batch dispatch, this does.

Timed three ways: each batch its own call with the weights as arguments (JAX flattens and
checks the ~270 weight arrays on every call); each batch its own call of a function that
closes over the weights (``--bound_weights``: only the images are arguments, as a server with
fixed weights would run it); and, at batch 1, all images in one jitted `lax.map` whose steps
are single images (the network's own latency: a switch still runs one branch there, as
`lax.map` is a loop, not a `vmap`). Batches are consecutive test images. Reported per image:
median over ``--repeats`` passes; the ratio to all-on, next to the mean executed-FLOPs ratio of the very images timed (the
targets: <= ratio + 0.10 at batch 1, <= ratio + 0.15 at batch 128). Skip's logits are checked
against the masked path's first. Writes a markdown file with the CPU model (``lscpu``).

    python benchmarks/dmnn_speed.py --model_dir=/tmp/dmnn [--batch_sizes=1,128] [--threads=1] [--out=...]

On a small CPU, batch-1 latency is best single-threaded (``--threads=1``): XLA's CPU runtime
hands each of the hundreds of tiny ops of a batch-1 forward between its pool threads, which
costs more than the second core gives (measured in benchmarks/results/dmnn_speed.md).
"""
from __future__ import annotations

import datetime
import json
import os
import statistics
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxdr import cpu_runtime, data, masks, models, reporting
from jaxdr.methods import dmnn as dmnn_method
from jaxdr.methods.dmnn import evaluate
from jaxdr.models import dmnn

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", "/tmp/dmnn", "Workdir of a trained `dmnn` run (or its model/ folder).")
flags.DEFINE_string("dataset", "", "Dataset of the test images ('' = the run's, from results.json).")
flags.DEFINE_list("batch_sizes", ["1", "128"], "Batch sizes to time.")
flags.DEFINE_integer("images", 1024, "Test images timed per pass (batch 1: that many calls).")
flags.DEFINE_integer("repeats", 5, "Timed passes per variant (median reported).")
flags.DEFINE_integer("buckets", 8, "Capacities per batch of the skip dispatch (batch / buckets steps).")
flags.DEFINE_string("out", "benchmarks/results/dmnn_speed.md", "Markdown file to write.")
flags.DEFINE_enum("paths", "trained", ["trained", "random"],
                  "Gates: the trained controllers' ('trained'), or per image random ('random': each "
                  "sub-block on with probability --random_rate, as a per-row mask [B, N] that replaces "
                  "the controllers; what the dispatch costs when images do take different paths).")
flags.DEFINE_float("random_rate", 0.5, "Probability a sub-block is on with --paths=random.")
flags.DEFINE_bool("bound_weights", True,
                  "Also time batch calls whose jitted function closes over the weights (only the "
                  "images, and a random-path mask, are arguments: what a server with fixed weights "
                  "runs; the per-call cost of passing the ~270 weight arrays is left out).")
flags.DEFINE_enum("allocator", "tcmalloc", cpu_runtime.ALLOCATORS, "Memory allocator (jaxdr/cpu_runtime.py).")
flags.DEFINE_enum("conv_impl", "native", ["xla", "im2col", "auto", "native"],
                  "How the convs run (jaxdr.ops.conv), the same for every variant ('native': jaxdr's "
                  "AVX-512 kernel where it applies and loads, else exactly 'auto').")
flags.DEFINE_integer("threads", 0,
                     "Run on this many CPUs (the process's affinity, set before JAX starts: XLA sizes "
                     "its thread pool by it); 0 = all. At batch 1 a single-threaded process per core "
                     "is how a latency server runs a small network.")

VARIANTS = ("all-on", "masked", "skip", "static path")
MODE_SUFFIX = {"per call": "", "per call, weights bound": " bound", "in one jit (lax.map)": " loop"}


def _dataset(model_dir: str) -> str:
  if FLAGS.dataset:
    return FLAGS.dataset
  for path in (os.path.join(model_dir, "results.json"), os.path.join(model_dir, "..", "results.json")):
    if os.path.exists(path):
      with open(path) as f:
        return json.load(f)["config"]["dataset"]["name"]
  raise app.UsageError("no results.json next to the model: pass --dataset")


def _first_call_s(fn, *args) -> float:
  """Seconds of ``fn``'s first call (tracing and compiling included)."""
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def _time_pass(fn, batches) -> float:
  """Seconds for one pass over ``batches`` (each call waited for, as a server would)."""
  start = time.perf_counter()
  for b in batches:
    jax.block_until_ready(fn(b))
  return time.perf_counter() - start


def main(argv):
  del argv
  cpu_runtime.ensure_allocator(FLAGS.allocator)
  if FLAGS.threads:  # before JAX's CPU client exists: XLA sizes its pools by the affinity
    cpus = sorted(os.sched_getaffinity(0))
    if FLAGS.threads > len(cpus):
      raise app.UsageError(f"--threads={FLAGS.threads}: this process may use {len(cpus)} CPUs")
    os.sched_setaffinity(0, cpus[:FLAGS.threads])
  model, variables, table = dmnn_method.load(FLAGS.model_dir, conv_impl=FLAGS.conv_impl)
  dataset = _dataset(FLAGS.model_dir)
  images, _ = data.as_arrays(dataset, "test", limit=FLAGS.images)
  graph = models.describe(model)
  all_on = masks.ones_mask([graph.gate(k) for k, _ in graph.groups])
  rows, lines = [], []
  rng = np.random.default_rng(0)
  keys = [k for k, _ in graph.groups]

  def gates_mask(batch):
    if FLAGS.paths == "trained":
      return None
    return {k: jnp.asarray(rng.random((batch, model.paths)) < FLAGS.random_rate, jnp.float32) for k in keys}

  for batch in (int(b) for b in FLAGS.batch_sizes):
    n = (len(images) // batch) * batch
    if n == 0:
      raise app.UsageError(f"--images={len(images)} holds no batch of {batch}")
    batches = [(jnp.asarray(images[i:i + batch]), gates_mask(batch)) for i in range(0, n, batch)]
    fast = model.clone(dispatch="skip", buckets=FLAGS.buckets)
    raw = {"all-on": lambda v, x, m: models.apply(model, v, x, all_on),
           "masked": lambda v, x, m: dmnn.forward(model, v, x, m)[:2],
           "skip": lambda v, x, m: models.apply(fast, v, x, m)}
    fns = {k: jax.jit(f) for k, f in raw.items()}
    compile_s = {name: _first_call_s(fn, variables, *batches[0]) for name, fn in fns.items()}
    gates = np.concatenate([np.asarray(fns["masked"](variables, *b)[1].gates) for b in batches])  # [n, blocks, N]
    static_gates = evaluate.modal_paths(gates)  # [blocks, N]
    static = {k: jnp.asarray(static_gates[i]) for i, k in enumerate(keys)}
    raw["static path"] = lambda v, x, m: models.apply(fast, v, x, static)
    fns["static path"] = jax.jit(raw["static path"])
    compile_s["static path"] = _first_call_s(fns["static path"], variables, *batches[0])
    worst = max(float(jnp.max(jnp.abs(fns["skip"](variables, *b) - fns["masked"](variables, *b)[0])))
                for b in batches[:4])
    ratio = float(table.executed(gates).mean() / table.total_macs)
    static_ratio = float(table.executed(static_gates[None]).mean() / table.total_macs)
    flops = {"all-on": 1.0, "masked": ratio, "skip": ratio, "static path": static_ratio}
    calls = {k: (lambda b, f=f: f(variables, *b)) for k, f in fns.items()}
    modes = {"per call": (calls, batches)}
    if FLAGS.bound_weights:  # the same forwards with the weights bound: only the batch is passed
      bound = {k: jax.jit(lambda x, m, f=f: f(variables, x, m)) for k, f in raw.items()}
      compile_s.update({k + " bound": _first_call_s(f, *batches[0]) for k, f in bound.items()})
      modes["per call, weights bound"] = ({k: (lambda b, f=f: f(*b)) for k, f in bound.items()}, batches)
    if batch == 1:  # the same single-image forwards as one jitted loop (no per-call dispatch)
      stacked = (jnp.asarray(images[:n]), None if batches[0][1] is None else
                 jax.tree.map(lambda *a: jnp.stack(a), *[m for _, m in batches]))
      looped = {k: jax.jit(lambda v, xs, ms, f=f: jax.lax.map(
          lambda xm: f(v, xm[0][None], xm[1]), (xs, ms))) for k, f in fns.items()}
      compile_s.update({k + " loop": _first_call_s(f, variables, *stacked) for k, f in looped.items()})
      modes["in one jit (lax.map)"] = ({k: (lambda b, f=f: f(variables, *b)) for k, f in looped.items()},
                                       [stacked])
    target = ratio + (0.10 if batch == 1 else 0.15)
    for mode, (fn_map, data_) in modes.items():
      for f in fn_map.values():  # warm-up pass
        _time_pass(f, data_[:8])
      times = {k: [] for k in VARIANTS}
      for _ in range(FLAGS.repeats):
        for k in VARIANTS:
          times[k].append(_time_pass(fn_map[k], data_) / n)
      med = {k: statistics.median(v) for k, v in times.items()}
      for k in VARIANTS:
        rel = med[k] / med["all-on"]
        rows.append(dict(batch=batch, mode=mode, variant=k, ms=1e3 * med[k], rel=rel,
                         flops=flops[k], target=target if k == "skip" else None,
                         ok=(rel <= target) if k == "skip" else None,
                         compile_s=compile_s[k + MODE_SUFFIX[mode]],
                         spread=(max(times[k]) - min(times[k])) / med[k]))
      print(f"batch {batch} {mode}: " + "  ".join(
          f"{k} {1e3 * med[k]:.3f} ms/img ({med[k] / med['all-on']:.3f})" for k in VARIANTS)
          + f"  FLOPs ratio {ratio:.4f}", flush=True)
    lines.append(f"- batch {batch}: {n} test images per pass; max |skip - masked| logit difference "
                 f"{worst:.2e}; executed-FLOPs ratio of these images {ratio:.4f}")

  cpu = f"{cpu_runtime.cpu_model()}, {os.cpu_count()} CPUs"
  table_md = ["| batch | timed | variant | ms / image | time vs all-on | FLOPs ratio | target (skip) | met | "
              "spread | compile s |", "|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    target = "" if r["target"] is None else f"<= {r['target']:.3f}"
    met = "" if r["ok"] is None else ("yes" if r["ok"] else "NO")
    table_md.append(f"| {r['batch']} | {r['mode']} | {r['variant']} | {r['ms']:.3f} | {r['rel']:.3f} | {r['flops']:.3f} | "
                    f"{target} | {met} | {r['spread']:.2f} | {r['compile_s']:.1f} |")
  text = "\n".join([
      "# DMNN dynamic inference: skip-compute vs the same network all on",
      "",
      f"Run {datetime.date.today().isoformat()}: `python {' '.join(sys.argv)}`",
      "",
      f"- CPU: {cpu}; jax {jax.__version__} on {jax.devices()[0].device_kind}; "
      f"{cpu_runtime.describe()}",
      f"- model: `{FLAGS.model_dir}` ({type(model).__name__}, N={model.paths}, {len(table.blocks)} gated "
      f"blocks, conv_impl {model.conv_impl}); "
      f"{len(os.sched_getaffinity(0))} CPU(s) used (--threads={FLAGS.threads or 'all'}); gates: "
      + (f"per image random (each sub-block on with probability {FLAGS.random_rate:g}, a per-row mask "
         "in place of the controllers)" if FLAGS.paths == "random" else "the trained controllers'")
      + f"; all-on {table.total_macs / 1e6:.2f}M MACs per image "
      f"(controllers {table.controller_macs / 1e6:.3f}M extra); dataset {dataset}",
      f"- skip dispatch: {FLAGS.buckets} capacities per batch; median of {FLAGS.repeats} passes "
      "(spread = (max - min) / median)",
      *lines,
      "",
      *table_md,
      ""])
  reporting.write_text_atomic(FLAGS.out, text)
  print(text)


if __name__ == "__main__":
  app.run(main)
