"""Table 1: FLOPs (= MACs, k^2 n_L f^2 n_(L-1)) and storage (4 f^2 n_(L-1) n_L bytes) against a hand
count on a tiny LeNet, the stop count at a relative drop, the bisection for CAR + fine-tuning."""
import numpy as np

from jaxdr import models
from jaxdr.methods.car import table
from tests.methods.car import nets


def test_costs_against_a_hand_count():
  model, _ = nets.tiny_lenet()  # 16x16x1 -> conv1 5x5 (5 filters, 12x12) -> pool -> conv2 5x5 (6, 2x2) -> fc1
  graph = models.describe(model)
  c1 = table.layer_costs(graph, "conv1", kept=3)
  assert c1["macs"] == 12 * 12 * 3 * 5 * 5 * 1  # k^2 n_L f^2 n_(L-1): 10800
  assert c1["storage_bytes"] == 4 * 5 * 5 * 1 * 3
  assert c1["next_macs"] == 2 * 2 * 6 * 5 * 5 * 3  # conv2 reads 3 of conv1's channels
  assert c1["next_storage_bytes"] == 4 * 5 * 5 * 3 * 6
  c2 = table.layer_costs(graph, "conv2", kept=4)
  fc1 = next(l for l in graph.layers if l.key == "fc1")
  assert c2["macs"] == 2 * 2 * 4 * 5 * 5 * 5 and c2["storage_bytes"] == 4 * 5 * 5 * 5 * 4
  assert fc1.in_positions == 1 and c2["next_macs"] == 1 * 4 * fc1.out_channels  # pooled 2x2 -> 1x1
  assert c2["next_storage_bytes"] == 4 * 4 * fc1.out_channels
  row = table.row(graph, "conv1", "CAR", 3, True, 0.9, 0.8)
  assert row["compression_ratio"] == 5 / 3 and row["macs_uncompressed"] == 12 * 12 * 5 * 25
  assert row["layer_and_next_macs_ratio"] == (18000 + 3000) / (10800 + 1800)
  assert table.row(graph, "conv1", "CAR", 0, True, 0.9, 0.8)["compression_ratio"] == float("inf")


def test_kept_at_drop():
  acc = {n: 0.5 + 0.05 * n for n in range(0, 11)}  # 1.0 at 10 filters
  calls = []

  def accuracy_of(counts):
    calls.append(list(counts))
    return np.array([acc[n] for n in counts])
  assert table.kept_at_drop(accuracy_of, 10, 1, floor=0.8) == (6, True)  # 0.8 at 6; 0.75 at 5 fails
  assert calls == [list(range(10, 0, -1))]  # a small layer: every count at once
  calls.clear()
  assert table.kept_at_drop(accuracy_of, 10, 1, floor=0.8, coarse=3) == (6, True)
  assert calls[0] == [10, 7, 4, 1] and calls[1] == [6, 5]  # coarse, then between 7 (good) and 4 (bad)
  assert table.kept_at_drop(accuracy_of, 10, 2, floor=0.1) == (2, False)  # never crossed
  acc[8] = 0.0  # the first crossing counts, not a later recovery
  assert table.kept_at_drop(accuracy_of, 10, 1, floor=0.8) == (9, True)


def test_smallest_passing_bisects():
  tried = []

  def passes(n):
    tried.append(n)
    return n >= 13
  assert table.smallest_passing(passes, 1, 50) == (13, True)
  assert len(tried) <= 1 + 6
  assert table.smallest_passing(lambda n: True, 1, 50) == (1, False)
