"""CARc: CAR is the mean of CARc over classes on a balanced set; the table's top / bottom classes."""
import numpy as np

from jaxdr.methods import car
from tests.methods.car import nets


def test_car_is_mean_of_carc_on_balanced_set():
  model, variables = nets.tiny_lenet(seed=3)
  x, _ = nets.images(40, 16, seed=5)
  y = np.repeat(np.arange(4), 10).astype(np.int32)
  s = car.score_layer(model, variables, x, y, {}, "conv2", num_classes=4, batch_size=16)
  carc = car.carc_index(s)
  np.testing.assert_allclose(car.car_index(s), carc.mean(axis=1), atol=1e-12)
  assert np.abs(carc).max() > 0  # some filter changes some class
  table = car.carc_table(carc[1:], car.car_index(s)[1:], ["a", "b", "c", "d"], top=2)
  row = table[int(np.argmax(np.abs(carc[1:]).max(1)))]
  assert len(row["top"]) == 2 and row["top"][0]["carc"] >= row["top"][1]["carc"] >= row["bottom"][0]["carc"]
