"""CCIV: union / XOR / keep fraction, bad sub-tasks, class similarity (Formula 5)."""
import numpy as np
import pytest

from jaxdr.errors import ConfigError
from jaxdr.methods import drnet


def test_union_is_max_over_classes_then_threshold(hand_civ):
  mask = drnet.cciv_mask(hand_civ, [1, 0], "union", threshold=0.2)
  np.testing.assert_array_equal(mask["a"], [1, 1, 1])  # max = [0.3, 0.5, 0.2] >= 0.2
  np.testing.assert_array_equal(mask["b"], [0, 0])     # max = [0.1, 0.0]
  mask = drnet.cciv_mask(hand_civ, [0, 1], "union", threshold=0.25)
  np.testing.assert_array_equal(mask["a"], [1, 1, 0])
  mask = drnet.cciv_mask(hand_civ, [0, 2], "union", threshold=0.5)
  np.testing.assert_array_equal(mask["a"], [1, 1, 0])
  np.testing.assert_array_equal(mask["b"], [0, 1])


def test_xor_keeps_channels_whose_importance_differs(hand_civ):
  mask = drnet.cciv_mask(hand_civ, [0, 2], "xor", threshold=0.35)
  np.testing.assert_array_equal(mask["a"], [1, 1, 0])  # |diff| = [0.9, 0.4, 0.2]
  np.testing.assert_array_equal(mask["b"], [0, 1])     # |diff| = [0.3, 0.6]
  np.testing.assert_array_equal(drnet.cciv_mask(hand_civ, [0, 1], "xor", threshold=0.3)["a"], [1, 1, 0])


def test_keep_fraction_threshold_and_min_channels(hand_civ):
  score = drnet.scores(hand_civ, [0, 2])  # a: [0.9, 0.9, 0.2], b: [0.4, 0.6]
  assert drnet.threshold_for_fraction(score, 0.6) == pytest.approx(0.6)  # 3 of 5
  mask = drnet.cciv_mask(hand_civ, [0, 2], keep_fraction=0.6)
  assert sum(m.sum() for m in mask.values()) == 3
  mask = drnet.cciv_mask(hand_civ, [0, 2], keep_fraction=0.2)  # 1 of 5 wanted; the tie at 0.9 keeps 2
  np.testing.assert_array_equal(mask["a"], [1, 1, 0])
  np.testing.assert_array_equal(mask["b"], [0, 0])
  mask = drnet.cciv_mask(hand_civ, [0, 2], keep_fraction=0.2, min_channels=1)
  np.testing.assert_array_equal(mask["b"], [0, 1])
  assert sum(m.sum() for m in drnet.cciv_mask(hand_civ, [1], keep_fraction=1.0).values()) == 5


@pytest.mark.parametrize("classes,combine,match", [
    ([], "union", "empty"), ([0, 3], "union", "out of range"), ([-1], "union", "out of range"),
    ([1, 1], "union", "repeats"), ([0, 1, 2], "xor", "exactly 2"), ([0], "xor", "exactly 2"),
    ([0, 1], "and", "combine"), (["cat"], "union", "integers")])
def test_bad_subtasks_raise_clear_errors(hand_civ, classes, combine, match):
  with pytest.raises(ConfigError, match=match):
    drnet.cciv_mask(hand_civ, classes, combine, threshold=0.1)


def test_bad_thresholds_raise(hand_civ):
  with pytest.raises(ConfigError, match="keep fraction"):
    drnet.cciv_mask(hand_civ, [0, 1], keep_fraction=1.5)
  with pytest.raises(ConfigError, match="threshold"):
    drnet.cciv_mask(hand_civ, [0, 1])


def test_civ_similarity_is_iou_of_nonzero_sets(hand_civ):
  sim = drnet.civ_similarity(hand_civ)
  # class sets over (a0, a1, a2, b0, b1): c0 {a1, a2, b0}, c1 {a0, a2}, c2 {a0, a1, b0, b1}
  np.testing.assert_allclose(sim, [[1, 1 / 4, 2 / 5], [1 / 4, 1, 1 / 5], [2 / 5, 1 / 5, 1]])
