"""Baseline pruning orders: incoming / outgoing weight importance on set weights, masks along an
order, random orders."""
import jax
import numpy as np

from jaxdr import models
from jaxdr.methods import car
from tests.methods.car import nets


def test_weight_baselines_on_set_weights():
  model, variables = nets.tiny_lenet()
  variables = jax.tree.map(np.array, variables)
  conv2 = variables["params"]["conv2"]["kernel"]  # HWIO [5, 5, 5, 6]
  conv2[:] = 1.0
  conv2[..., 4] = 0.1  # filter 4 of conv2 has the smallest incoming weights
  conv2[:, :, 2, :] = 0.01  # input channel 2 (conv1 filter 2) the smallest outgoing weights
  fc1 = variables["params"]["fc1"]["dense"]["kernel"]  # rows (position, channel)-major, 6 channels
  fc1[:] = 1.0
  fc1[3::6] = -0.2  # conv2 channel 3: smallest |outgoing|
  assert car.order_by(car.incoming_importance(model, variables, "conv2"))[0] == 4
  assert car.order_by(car.outgoing_importance(model, variables, "conv1"))[0] == 2
  assert car.order_by(car.outgoing_importance(model, variables, "conv2"))[0] == 3
  masks = car.masks_along([3, 0, 1, 2], [4, 2, 0])
  np.testing.assert_array_equal(masks, [[1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]])
  r = car.random_orders(6, 10, seed=1)
  assert r.shape == (10, 6) and all(sorted(o) == list(range(6)) for o in r)
  assert len({tuple(o) for o in r}) > 1
  first = models.describe(model).layers[0]
  np.testing.assert_array_equal(car.layer_kernel(variables, first), variables["params"]["conv1"]["kernel"])
