"""Does channel surgery turn FLOPs savings into wall-clock speed? Masked vs sliced forward.

For VGG-16 and ResNet-56 (CIFAR: 32x32, 10 classes) and masks removing 30/50/70% of the
MACs, times the jitted forward of the masked full model and of the sliced model side by
side (batch 1 and 128, median of repeats) and writes a markdown table.

Masks (``--families``): 'uniform' closes the same fraction of every channel space
(residual streams as a whole); 'internal' closes only channels private to a block (not the
residual streams: what pruning methods usually cut in ResNets; skipped for models without
streams). The last channels of a space close (timing does not depend on which); the
fraction is bisected until the physically realised MACs hit the target. Each mask is sliced
with every ``--channel_multiples`` value (``surgery.slice_model(channel_multiple=m)``: widths
rounded up to multiples of m, the bisection accounting for it), and the FLOPs ratio is that
of the sliced model actually timed. Masked and sliced calls alternate, so load changes hit
both alike.

    python benchmarks/surgery_speed.py [--runs=vgg16:auto,resnet56:xla] [--repeats=7] [--out=benchmarks/results/surgery_speed.md]

``--torch_reference`` adds the same full and sliced networks run in PyTorch, for context.
"""
from __future__ import annotations

import functools
import os
import statistics
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

from jaxdr import costs, cpu_runtime, masks, models, ops, surgery
from jaxdr.models import resnet, vgg
from jaxdr.ops import conv as conv_lib, native_conv, winograd

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", ["vgg16:auto", "resnet56:auto", "resnet56:xla"],
                  "model:conv_impl pairs to time (conv_impl in xla | im2col | auto | native); "
                  "with --native_conv, 'auto' runs are timed as 'native'.")
flags.DEFINE_list("targets", ["0.3", "0.5", "0.7"], "Fractions of MACs to remove.")
flags.DEFINE_list("families", ["uniform", "internal"], "Mask families (see the docstring).")
flags.DEFINE_list("channel_multiples", ["1", "8"], "surgery channel_multiple values to time.")
flags.DEFINE_list("batch_sizes", ["1", "128"], "Batch sizes to time.")
flags.DEFINE_integer("repeats", 7, "Timed calls per measurement (median reported).")
flags.DEFINE_string("out", "benchmarks/results/surgery_speed.md", "Markdown file to write.")
flags.DEFINE_enum("allocator", "tcmalloc", cpu_runtime.ALLOCATORS, "Memory allocator (jaxdr/cpu_runtime.py).")
flags.DEFINE_bool("xla_cpu_ynn", True, "XLA CPU YNNPACK fusions (jaxdr/cpu_runtime.py).")
flags.DEFINE_bool("native_conv", True, "Run the 'auto' models as conv_impl 'native' (jaxdr's "
                  "native 3x3 conv kernel, jaxdr/ops/native_conv.py, where it builds); false: "
                  "'auto' as it is (XLA's convs where 'native' would use the kernel).")
flags.DEFINE_bool("torch_reference", False, "Also time the same full and sliced networks in "
                  "PyTorch (our weights, eval mode) at the largest batch: how PyTorch's CPU convs "
                  "turn the same slicing into speed. Needs torch (the bench extra).")
flags.DEFINE_bool("conv_table", True, "Also time single 3x3 convs (XLA vs im2col) at full and "
                  "sliced widths: which conv implementation is faster for which shapes.")
# (map size, channels) of ResNet-56's and VGG-16's 3x3 convs at 32x32; kept channel fractions
# (a uniform keep k removes about 1 - k^2 of the MACs: 0.84 ~ 30%, 0.7 ~ 50%, 0.55 ~ 70%).
CONV_SHAPES = ((32, 16), (16, 32), (8, 64), (32, 64), (16, 128), (8, 256), (4, 512), (2, 512))
CONV_KEEP = (1.0, 0.7, 0.55)


def uniform_mask(graph, fraction: float, family: str = "uniform"):
  """Closes the last round(fraction * C) channels of every space (at all its gate points);
  family 'internal' only of spaces that are not residual streams."""
  mask = {}
  for points in masks.spaces(graph.gates).values():
    if family == "internal" and points[0].coupled:
      continue
    c = points[0].channels
    closed = min(c - 1, int(round(fraction * c)))
    gate = np.ones(c, np.float32)
    gate[c - closed:] = 0.0
    for p in points:
      mask[p.key] = jnp.asarray(gate)
  return mask


def mask_for_target(model, target: float, family: str = "uniform", multiple: int = 1):
  """(mask, realised MAC reduction after slicing with ``multiple``): bisects the fraction."""
  graph = models.describe(model)
  full = costs.count(graph).macs
  saved = lambda m: 1 - costs.count(graph, m, "physical", channel_multiple=multiple).macs / full  # noqa: E731
  lo, hi = 0.0, 1.0
  for _ in range(30):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if saved(uniform_mask(graph, mid, family)) < target else (lo, mid)
  mask = uniform_mask(graph, hi, family)
  return mask, saved(mask)


def alternating_medians(fns, repeats: int):
  """Median seconds of each zero-argument call (already warmed up); the calls alternate
  within every repeat, so load changes hit them alike. Calls return what to block on."""
  times = [[] for _ in fns]
  for _ in range(repeats):
    for fn, ts in zip(fns, times):
      t = time.perf_counter()
      jax.block_until_ready(fn())
      ts.append(time.perf_counter() - t)
  return [statistics.median(ts) for ts in times]


def time_forwards(calls, batch: int, repeats: int):
  """Median seconds of each (model, variables, mask) jitted forward at ``batch``, alternating
  (compiled and warmed up first)."""
  fns = []
  for model, variables, mask in calls:
    fwd = jax.jit(lambda v, x, m, model=model: models.apply(model, v, x, m))
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, model.image_size, model.image_size,
                                                   model.input_channels))
    for _ in range(2):
      fwd(variables, x, mask).block_until_ready()
    fns.append(functools.partial(fwd, variables, x, mask))
  return alternating_medians(fns, repeats)


def torch_mirror(model, variables):
  """The same network as a PyTorch forward (our weights, eval-mode BN; masks not applied):
  VGG or a CIFAR ResNet with basic blocks. Returns (forward on NHWC numpy images, torch)."""
  import torch  # pylint: disable=g-import-not-at-top
  F = torch.nn.functional
  params, stats = variables["params"], variables["batch_stats"]
  tensor = lambda a: torch.from_numpy(np.array(a))  # noqa: E731

  def unit(x, name, stride=1, act=True):
    p, st = params, stats
    for k in name.split("/"):
      p, st = p[k], st[k]
    w = tensor(p["kernel"]).permute(3, 2, 0, 1).contiguous()
    x = F.conv2d(x, w, tensor(p["bias"]) if "bias" in p else None, stride=stride, padding=w.shape[-1] // 2)
    x = F.batch_norm(x, tensor(st["bn"]["mean"]), tensor(st["bn"]["var"]), tensor(p["bn"]["scale"]),
                     tensor(p["bn"]["bias"]), eps=1e-5)
    return F.relu(x) if act else x

  head = params["classifier"]["dense"]
  w_out, b_out = tensor(head["kernel"]), tensor(head["bias"])
  if isinstance(model, vgg.VGG):
    def body(x):
      i = 0
      for v in model.cfg:
        if v == "M":
          x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        else:
          x, i = unit(x, f"conv{i}"), i + 1
      return x
  elif isinstance(model, resnet.ResNet) and not model.bottleneck and not model.imagenet_stem:
    blocks = sorted((k for k in params if k.startswith("stage")),
                    key=lambda k: tuple(int(n) for n in k[len("stage"):].split("_block")))
    def body(x):
      x = unit(x, "stem")
      for name in blocks:
        stride = 2 if name.endswith("_block0") and not name.startswith("stage1_") else 1
        y = unit(unit(x, f"{name}/conv1", stride), f"{name}/conv2", act=False)
        shortcut = unit(x, f"{name}/shortcut", stride, act=False) if "shortcut" in params[name] else x
        x = F.relu(y + shortcut)
      return x
  else:
    raise ValueError(f"no PyTorch mirror for {type(model).__name__}")

  def forward(images):
    with torch.no_grad():
      x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).contiguous()
      return (body(x).mean((2, 3)) @ w_out + b_out).numpy()
  return forward, torch


def time_torch(forwards, batch: int, repeats: int):
  """Median seconds of each PyTorch forward at ``batch``, alternating within every repeat."""
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (batch, 32, 32, 3)))
  for f in forwards:
    f(x)
  return alternating_medians([functools.partial(f, x) for f in forwards], repeats)


def time_conv(size: int, cin: int, cout: int, batch: int, impl: str, repeats: int) -> float:
  """Median seconds of one jitted 3x3 stride-1 conv [batch, size, size, cin] -> cout."""
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, cin))
  k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, cin, cout))
  f = jax.jit(lambda x, k: ops.conv2d(x, k, stride=1, padding=1, groups=1, impl=impl))
  f(x, k).block_until_ready()
  return alternating_medians([functools.partial(f, x, k)], repeats)[0]


def time_native(size: int, c: int, batch: int, repeats: int) -> float:
  """Median seconds of one jitted native 3x3 conv [batch, size, size, c] -> c."""
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, c))
  k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, c, c))
  f = jax.jit(native_conv.conv3x3)
  f(x, k).block_until_ready()
  return alternating_medians([functools.partial(f, x, k)], repeats)[0]


def conv_table(batch: int) -> list:
  """Markdown rows: per VGG conv shape and kept fraction, XLA vs im2col (vs the native kernel)
  time at ``batch``, and what 'auto' runs."""
  native = native_conv.ready()
  lines = [f"## Which conv implementation is faster where (3x3 conv, batch {batch})", "",
           f"`auto` uses im2col at or below {conv_lib.AUTO_IM2COL_MAX_PIXELS} output pixels on CPU, "
           "Winograd on wide even maps; `native` also the native kernel where it builds.", "",
           "| map | channels in->out | MACs (M) | XLA ms | im2col ms | XLA / im2col | native ms | XLA / native | auto picks |",
           "|---|---|---|---|---|---|---|---|---|"]
  for size, width in CONV_SHAPES:
    for keep in CONV_KEEP:
      c = max(1, int(round(width * keep)))
      xla = time_conv(size, c, c, batch, "xla", FLAGS.repeats)
      im2col = time_conv(size, c, c, batch, "im2col", FLAGS.repeats)
      own = time_native(size, c, batch, FLAGS.repeats) if native else float("nan")
      macs = 9 * c * c * size * size * batch / 1e6
      if size * size <= conv_lib.AUTO_IM2COL_MAX_PIXELS:
        pick = "im2col"
      elif winograd.applies((batch, size, size, c), (3, 3, c, c), 1, 1):
        pick = "winograd"
      else:
        pick = "native" if native else "xla"
      lines.append(f"| {size}x{size} | {c}->{c} | {macs:.0f} | {xla * 1e3:.2f} | {im2col * 1e3:.2f} | "
                   f"{xla / im2col:.2f} | {own * 1e3:.2f} | {xla / own:.2f} | {pick} |")
      print(lines[-1], flush=True)
  return lines


def main(argv):
  del argv
  cpu_runtime.ensure_allocator(FLAGS.allocator)
  cpu_runtime.set_ynn(FLAGS.xla_cpu_ynn)
  if FLAGS.native_conv:
    native_conv.load()  # outside any trace; logs why where it cannot run
  batches = [int(b) for b in FLAGS.batch_sizes]
  load_before = os.getloadavg()
  rows = []
  for name, impl in (run.split(":") for run in FLAGS.runs):
    if impl == "auto" and FLAGS.native_conv:
      impl = "native"
    model = models.create(name, num_classes=10, image_size=32, conv_impl=impl)
    variables = models.init(model, jax.random.PRNGKey(0))
    graph = models.describe(model)
    full_macs = costs.count(graph).macs
    has_streams = any(p.coupled for p in graph.gates)
    for family in FLAGS.families:
      if family == "internal" and not has_streams:
        continue
      for target in (float(t) for t in FLAGS.targets):
        for multiple in (int(m) for m in FLAGS.channel_multiples):
          mask, saved = mask_for_target(model, target, family, multiple)
          small, small_vars, rest = surgery.slice_model(model, variables, mask,
                                                        channel_multiple=multiple)
          widths = sorted({p.channels for p in models.describe(small).gates})
          row = dict(model=name, impl=impl, family=family, multiple=multiple, target=target,
                     saved=saved, ratio=full_macs / costs.count(small).macs, widths=widths)
          for b in batches:
            row[b] = time_forwards([(model, variables, mask), (small, small_vars, rest)], b,
                                   FLAGS.repeats)
            masked, sliced = row[b]
            print(f"{name} ({impl}) {family} x{multiple} -{target:.0%} batch {b}: masked "
                  f"{masked * 1e3:.1f} ms, sliced {sliced * 1e3:.1f} ms, speedup "
                  f"{masked / sliced:.2f}x (MACs ratio {row['ratio']:.2f})", flush=True)
          if FLAGS.torch_reference:
            full_t, torch = torch_mirror(model, variables)
            small_t, _ = torch_mirror(small, small_vars)
            x = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (2, 32, 32, 3)))
            diff = max(float(np.max(np.abs(f(x) - np.asarray(models.apply(m, v, x)))))
                       for f, m, v in ((full_t, model, variables), (small_t, small, small_vars)))
            if diff > 1e-3:
              raise SystemExit(f"PyTorch mirror of {name} differs from jaxdr by {diff:.1e}")
            row["torch"] = time_torch([full_t, small_t], max(batches), FLAGS.repeats)
            row["torch_threads"] = torch.get_num_threads()
            print(f"  PyTorch ({row['torch_threads']} threads) batch {max(batches)}: full "
                  f"{row['torch'][0] * 1e3:.1f} ms, sliced {row['torch'][1] * 1e3:.1f} ms", flush=True)
          rows.append(row)
  extra = conv_table(max(batches)) if FLAGS.conv_table else []
  load_after = os.getloadavg()
  write_table(rows, batches, load_before, load_after, extra)


def write_table(rows, batches, load_before, load_after, extra=()):
  head = ["model", "conv impl", "masks", "channel multiple", "MACs removed (target)",
          "sliced widths", "FLOPs ratio full/sliced"]
  for b in batches:
    head += [f"masked ms @{b}", f"sliced ms @{b}", f"speedup @{b}"]
  head += [f"speedup / FLOPs ratio @{b}" for b in batches]
  torch_cols = any("torch" in r for r in rows)
  if torch_cols:
    head += [f"PyTorch {c} @{max(batches)}" for c in ("full ms", "sliced ms", "speedup / FLOPs ratio")]
  lines = ["# Channel surgery: masked full model vs sliced model (jitted forward, CPU)", "",
           f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `python benchmarks/surgery_speed.py "
           f"{' '.join(sys.argv[1:])}`; jax {jax.__version__}, backend {jax.default_backend()}, "
           f"{os.cpu_count()} CPU cores ({cpu_runtime.cpu_model()}), {cpu_runtime.describe()}, native 3x3 conv kernel "
           f"{'on' if native_conv.ready() else 'off (' + str(native_conv.unavailable_reason() or '--nonative_conv') + ')'}. Median of "
           f"{FLAGS.repeats} calls after 2 warm-up calls, masked and sliced calls alternating. CIFAR shapes: 32x32x3, 10 classes.", "",
           f"Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after the run (the 2 cores "
           f"are shared: absolute times move with the load; the ratios less so).", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    cells = [r["model"], r["impl"], r["family"], str(r["multiple"]),
             f"{r['saved']:.1%} ({r['target']:.0%}{'' if r['saved'] >= r['target'] - 0.005 else ', not reached'})",
             ",".join(map(str, r["widths"])),
             f"{r['ratio']:.2f}"]
    for b in batches:
      m, s = r[b]
      cells += [f"{m * 1e3:.1f}", f"{s * 1e3:.1f}", f"{m / s:.2f}x"]
    cells += [f"{r[b][0] / r[b][1] / r['ratio']:.2f}" for b in batches]
    if torch_cols:
      full_t, small_t = r.get("torch", (float("nan"), float("nan")))
      cells += [f"{full_t * 1e3:.1f}", f"{small_t * 1e3:.1f}", f"{full_t / small_t / r['ratio']:.2f}"]
    lines.append("| " + " | ".join(cells) + " |")
  lines += [""] + list(extra)
  os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
  with open(FLAGS.out, "w") as f:
    f.write("\n".join(lines) + "\n")
  print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
  app.run(main)
