"""Converts a torchvision-layout PyTorch state_dict (``.pth``) into a jaxdr saved model.

    python -m jaxdr.torch_import --model=vgg16_torchvision --num_classes=1000 \
        --pth=vgg16-397923af.pth --out=/tmp/vgg16

``--out`` then loads with `jaxdr.checkpoints.load_model` and serves as any method's
``--config.pretrained=DIR`` (or pass the ``.pth`` itself there: `checkpoints.load_pretrained`).
Nothing is downloaded; PyTorch must be installed to read the file (`jaxdr.torch_weights`).
A bad argument or a file that does not match the model prints one ``jaxdr: error: ...`` line
and exits 2. (argparse, not absl flags: ``jaxdr.summary`` defines ``--model`` too, and both
modules may be imported by one process.)
"""
from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from etils import epath

from jaxdr import checkpoints, costs, models, options, torch_weights
from jaxdr.errors import ConfigError, UserError

USAGE_EXIT = 2


def convert(pth, out, model_name: str, *, num_classes: int = 1000, image_size: int = 224,
            input_channels: int = 3, width: float = 1.0) -> epath.Path:
  """Reads ``pth`` into ``model_name`` built with these arguments and saves it to ``out``."""
  if model_name not in models.names():
    raise ConfigError(f"unknown model {model_name!r}{options.nearest(model_name, torch_weights.IMPORTABLE)}")
  kwargs = dict(num_classes=num_classes, image_size=image_size, input_channels=input_channels, width=width)
  model = models.create(model_name, **kwargs)
  variables = torch_weights.load_pth(pth, model)
  return checkpoints.save_model(out, model_name, kwargs, variables)


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # a usage error is one 'jaxdr: error:' line too
    raise ConfigError(message)


def _parser() -> argparse.ArgumentParser:
  p = _Parser(prog="python -m jaxdr.torch_import", description=__doc__.splitlines()[0])
  p.add_argument("--model", required=True, help=f"zoo model: {', '.join(torch_weights.IMPORTABLE)}")
  p.add_argument("--pth", required=True, help="the torch.save()d state_dict")
  p.add_argument("--out", required=True, help="directory to write the jaxdr model to")
  p.add_argument("--num_classes", type=int, default=1000)
  p.add_argument("--image_size", type=int, default=224, help="input height = width the model expects")
  p.add_argument("--input_channels", type=int, default=3)
  p.add_argument("--width", type=float, default=1.0, help="width multiplier the weights were trained at")
  return p


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command line; returns the exit status (0, or 2 after one ``jaxdr: error:`` line)."""
  try:
    args = _parser().parse_args(argv)
    out = convert(args.pth, args.out, args.model, num_classes=args.num_classes,
                  image_size=args.image_size, input_channels=args.input_channels, width=args.width)
  except UserError as e:
    sys.stderr.write(f"jaxdr: error: {' '.join(str(e).split())}\n")
    return USAGE_EXIT
  params = costs.count(models.create(args.model, num_classes=args.num_classes, image_size=args.image_size,
                                    input_channels=args.input_channels, width=args.width)).params
  print(f"wrote {out}: {args.model}, {params:,} params")
  return 0


if __name__ == "__main__":
  sys.exit(main())
