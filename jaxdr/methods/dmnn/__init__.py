"""DMNN (Su et al., *Dynamic Multi-path Neural Network*) on the shared trainer.

    python -m jaxdr.main --config=configs/dmnn_fashion_mnist.py --workdir=DIR

The models are in `jaxdr.models.dmnn` (blocks, controllers, gates, skip-compute dispatch) and
`jaxdr.models.dmnn_nets` (architectures); here: options (the ``dmnn`` config section), exact
per-part costs (`flops`), the losses (`losses`), evaluation (`evaluate`), figures (`plots`) and
the method's `run` (`experiment`).

The names below load their module on first use (`jaxdr.lazy`): a config file that imports
this package's ``options`` does not import JAX.
"""
from typing import TYPE_CHECKING

from jaxdr import lazy

_EXPORTS = {
    "experiment": ("load", "run"),
    "flops": ("CostTable", "cost_table"),
    "options": ("DmnnOptions",),
}
__getattr__, __dir__, __all__ = lazy.exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # what linters and IDEs read
  from jaxdr.methods.dmnn.experiment import load, run  # noqa: F401
  from jaxdr.methods.dmnn.flops import CostTable, cost_table  # noqa: F401
  from jaxdr.methods.dmnn.options import DmnnOptions  # noqa: F401
