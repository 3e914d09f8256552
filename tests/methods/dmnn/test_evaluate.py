"""DMNN evaluation helpers."""
import numpy as np

from jaxdr.methods.dmnn import evaluate


def test_modal_paths_picks_each_blocks_most_common_pattern():
  """Per block the most common on/off pattern, even where no image takes all of them together."""
  gates = np.array([[[1, 0], [0, 1]],
                    [[1, 0], [1, 1]],
                    [[0, 1], [1, 1]]], np.int32)  # [images 3, blocks 2, N 2]
  got = evaluate.modal_paths(gates)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, [[1, 0], [1, 1]])
