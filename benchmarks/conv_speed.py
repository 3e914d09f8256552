"""Where is jaxdr's native 3x3 conv faster than XLA's? One conv per shape, both ways, alternating.

For every (batch, map size, Cin, Cout) in the grid, times the jitted 3x3 stride-1 'same'
float32 conv by `jaxdr.ops.native_conv.conv3x3` and by XLA (`xla_conv.conv_stride1`, what 'auto'
runs there), round by round in turn (`toolkit.latency.time_calls`) so that a slow spell of a shared machine hits both alike,
and reports the medians, the arithmetic rate (GMAC/s) and the ratio. The thresholds of
`native_conv.applies` (MIN_WIDTH, MIN_PIXELS) are read off this table. Writes markdown with the
CPU model (``lscpu``) and says which shapes `applies` sends to the native kernel today.

``--first_layers=28:16,...`` adds a table for convs of one-channel inputs (a grey image's first
layer, size:Cout): `jaxdr.ops.taps` vs the native kernel vs XLA, each followed by a bias /
BatchNorm-like affine and a ReLU (the taps sum fuses with them; the others write their output
and read it back), which reads off `taps.MAX_TAPS`.

    python benchmarks/conv_speed.py [--batch_sizes=1,128] [--sizes=3,4,5,6,7,8,14,28] [--out=...]
"""
from __future__ import annotations

import datetime
import os
import sys

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from jaxdr import cpu_runtime, reporting  # noqa: E402
from jaxdr.ops import native_conv, taps, xla_conv  # noqa: E402
from jaxdr.toolkit import latency  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("batch_sizes", ["1", "128"], "Batch sizes.")
flags.DEFINE_list("sizes", ["3", "4", "5", "6", "7", "8", "14", "28"], "Square map sizes (H = W).")
flags.DEFINE_list("channels", ["16:16", "32:32", "40:40", "64:64", "128:128"], "Cin:Cout pairs.")
flags.DEFINE_list("first_layers", [], "size:Cout of one-channel-input convs to time (taps vs native vs XLA).")
flags.DEFINE_integer("repeats", 60, "Timed rounds per shape (median).")
flags.DEFINE_string("out", "benchmarks/results/conv_speed.md", "Markdown file to write.")


def _first_layer_table(rng):
  """Markdown lines: one-channel-input 3x3 convs (+ affine + ReLU) by taps, native, XLA."""
  epilogue = lambda y: jax.nn.relu(1.5 * y + 0.1)  # noqa: E731
  paths = {"taps": lambda x, w: taps.taps_conv(x, w, 1), "native": native_conv.conv3x3,
           "XLA": lambda x, w: xla_conv.conv_stride1(x, w, 1)}
  lines = ["## One-channel inputs (+ affine + ReLU): shifted taps vs native vs XLA", "",
           "| batch | map | 1 -> Cout | taps us | native us | XLA us | max abs diff |", "|---|---|---|---|---|---|---|"]
  for batch in (int(b) for b in FLAGS.batch_sizes):
    for spec in FLAGS.first_layers:
      size, cout = (int(v) for v in spec.split(":"))
      x = jnp.asarray(rng.normal(size=(batch, size, size, 1)), jnp.float32)
      w = jnp.asarray(rng.normal(size=(3, 3, 1, cout)), jnp.float32)
      fns = {name: jax.jit(lambda x, w, f=f: epilogue(f(x, w))) for name, f in paths.items()}
      worst = max(float(jnp.max(jnp.abs(fns[n](x, w) - fns["XLA"](x, w)))) for n in fns)
      med = latency.time_calls({n: (lambda f=f: f(x, w)) for n, f in fns.items()}, FLAGS.repeats)
      lines.append(f"| {batch} | {size}x{size} | 1 -> {cout} | {1e6 * med['taps']:.1f} | "
                   f"{1e6 * med['native']:.1f} | {1e6 * med['XLA']:.1f} | {worst:.1e} |")
      print(lines[-1], flush=True)
  return lines + [""]


def main(argv):
  del argv
  cpu_runtime.ensure_allocator("tcmalloc")
  native_conv.load()
  if not native_conv.ready():
    raise app.UsageError("the native kernel is not available here: nothing to compare")
  native = jax.jit(native_conv.conv3x3)
  xla = jax.jit(lambda x, w: xla_conv.conv_stride1(x, w, 1))
  rng = np.random.default_rng(0)
  rows = []
  first = _first_layer_table(rng) if FLAGS.first_layers else []
  for batch in (int(b) for b in FLAGS.batch_sizes):
    for size in (int(s) for s in FLAGS.sizes):
      for pair in FLAGS.channels:
        cin, cout = (int(c) for c in pair.split(":"))
        x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(3, 3, cin, cout)), jnp.float32)
        worst = float(jnp.max(jnp.abs(native(x, w) - xla(x, w))))
        med = latency.time_calls({"native": lambda: native(x, w), "xla": lambda: xla(x, w)}, FLAGS.repeats)
        macs = batch * size * size * 9 * cin * cout
        applies = native_conv.applies(x, w, 1, 1, 1)
        rows.append((batch, size, cin, cout, med["native"], med["xla"], macs, applies, worst))
        print(f"batch {batch} {size}x{size} {cin}->{cout}: native {1e6 * med['native']:.1f} us, "
              f"xla {1e6 * med['xla']:.1f} us, xla/native {med['xla'] / med['native']:.2f}"
              f"{'  (native today)' if applies else ''}", flush=True)
  table = ["| batch | map | Cin -> Cout | native us | XLA us | native GMAC/s | XLA GMAC/s | XLA / native "
           "| `applies` | max abs diff |", "|---|---|---|---|---|---|---|---|---|---|"]
  for batch, size, cin, cout, tn, tx, macs, applies, worst in rows:
    table.append(f"| {batch} | {size}x{size} | {cin} -> {cout} | {1e6 * tn:.1f} | {1e6 * tx:.1f} | "
                 f"{macs / tn / 1e9:.0f} | {macs / tx / 1e9:.0f} | {tx / tn:.2f} | "
                 f"{'native' if applies else 'XLA'} | {worst:.1e} |")
  text = "\n".join([
      "# 3x3 'same' convs: jaxdr's native kernel vs XLA, per shape", "",
      f"Run {datetime.date.today().isoformat()}: `python {' '.join(sys.argv)}`", "",
      f"- CPU: {cpu_runtime.cpu_model()}; jax {jax.__version__}; {cpu_runtime.describe()}",
      f"- median of {FLAGS.repeats} alternating rounds; `applies`: where `native_conv.applies` "
      f"(MIN_WIDTH {native_conv.MIN_WIDTH}, MIN_PIXELS {native_conv.MIN_PIXELS}) sends the conv", "",
      *table, "", *first])
  reporting.write_text_atomic(FLAGS.out, text)
  print(text)


if __name__ == "__main__":
  app.run(main)
