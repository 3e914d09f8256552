"""The open trainer every method shares (see docs/architecture.md).

    result = training.fit(model, options, source, objective=..., workdir=..., mask=..., evaluate=...)
    metrics = training.train_and_evaluate(config, workdir)      # supervised: config's model + dataset
    accuracy = training.evaluate(model, variables, images, labels, mask=...)

The names below load their module on first use (`jaxdr.lazy`): a config file that imports
``jaxdr.training.options`` does not import JAX.
"""
from typing import TYPE_CHECKING

from jaxdr import lazy

_EXPORTS = {
    "distributed": ("data_mesh", "global_batch", "local_batch_size", "maybe_initialize_distributed"),
    "evaluation": ("evaluate", "split_evaluator", "sums", "test_batches"),
    "inputs": ("ArraySource", "DatasetSource"),
    "loop": ("FitResult", "fit", "total_steps"),
    "metrics": ("read_metrics",),
    "objective": ("LossContext", "LossOutput", "Objective", "cross_entropy", "cross_entropy_loss"),
    "optim": ("layer_of", "learning_rate_schedule", "make_optimizer"),
    "options": ("TrainOptions",),
    "state": ("TrainState",),
    "supervised": ("create_model", "dataset_source", "model_kwargs", "test_evaluator",
                   "train_and_evaluate"),
}
__getattr__, __dir__, __all__ = lazy.exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # what linters and IDEs read
  from jaxdr.training.distributed import (data_mesh, global_batch, local_batch_size,  # noqa: F401
                                          maybe_initialize_distributed)
  from jaxdr.training.evaluation import evaluate, split_evaluator, sums, test_batches  # noqa: F401
  from jaxdr.training.inputs import ArraySource, DatasetSource  # noqa: F401
  from jaxdr.training.loop import FitResult, fit, total_steps  # noqa: F401
  from jaxdr.training.metrics import read_metrics  # noqa: F401
  from jaxdr.training.objective import (LossContext, LossOutput, Objective,  # noqa: F401
                                        cross_entropy, cross_entropy_loss)
  from jaxdr.training.optim import layer_of, learning_rate_schedule, make_optimizer  # noqa: F401
  from jaxdr.training.options import TrainOptions  # noqa: F401
  from jaxdr.training.state import TrainState  # noqa: F401
  from jaxdr.training.supervised import (create_model, dataset_source, model_kwargs,  # noqa: F401
                                         test_evaluator, train_and_evaluate)
