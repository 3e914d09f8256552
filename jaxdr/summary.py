"""Per-layer parameters and MACs of a zoo model (no weights are built: shapes only).

    python -m jaxdr.summary --model=resnet56 --num_classes=10 --image_size=32 --input_channels=3
    python -m jaxdr.summary --model=mobilenet_v2 --num_classes=1000 --image_size=224 --json
"""
from __future__ import annotations

import json
import sys

from absl import app, flags, logging

from jaxdr import costs, models

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Zoo model name (jaxdr.models.names()).")
flags.DEFINE_integer("num_classes", 10, "Number of classes.")
flags.DEFINE_integer("image_size", 32, "Input height = width.")
flags.DEFINE_integer("input_channels", 3, "Input channels.")
flags.DEFINE_float("width", 1.0, "Width multiplier.")
flags.DEFINE_bool("json", False, "Print one JSON object {model, params, macs, layers} instead of a table.")


def format_table(name: str, c: costs.Costs) -> str:
  """Markdown-style table: layer, gate point, output channels, params, MACs; then totals."""
  lines = [f"{name}: {c.params:,} params, {c.macs:,} MACs ({c.macs / 1e6:.2f}M)",
           f"{'layer':<28} {'gate point':<28} {'channels':>9} {'params':>12} {'MACs':>15}"]
  for l in c.layers:
    lines.append(f"{l.path:<28} {l.gate or '-':<28} {l.out_kept:>4}/{l.out_total:<4} "
                 f"{l.params:>12,} {l.macs:>15,}")
  lines.append(f"{'total':<28} {'':<28} {'':>9} {c.params:>12,} {c.macs:>15,}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # no backend-probing INFO lines around the output
  try:
    if not FLAGS.model:
      raise ValueError(f"--model is required; known models: {', '.join(models.names())}")
    model = models.create(FLAGS.model, num_classes=FLAGS.num_classes, image_size=FLAGS.image_size,
                          input_channels=FLAGS.input_channels, width=FLAGS.width)
    result = costs.count(model)
  except Exception as e:  # one clear line, not a traceback
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  if FLAGS.json:
    print(json.dumps(dict(model=FLAGS.model, **result.as_dict())))
  else:
    print(format_table(FLAGS.model, result))


if __name__ == "__main__":
  app.run(main)
