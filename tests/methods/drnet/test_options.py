"""DrnetOptions: defaults once, unknown keys refused with the nearest valid name, ranges checked."""
import ml_collections
import pytest

from jaxdr.errors import ConfigError
from jaxdr.methods import drnet


def test_round_trip_and_nested_cdrp():
  c = drnet.DrnetOptions().to_config()
  c.keep_fraction = 0.5
  c.cdrp.on_top1_change = "best"
  opts = drnet.DrnetOptions.from_config(c, "drnet")
  assert opts.keep_fraction == 0.5 and opts.cdrp == drnet.CdrpOptions(on_top1_change="best")
  assert drnet.DrnetOptions.from_config(drnet.DrnetOptions().to_config()) == drnet.DrnetOptions()
  assert opts.threshold == opts.union_thr and opts.replace(combine="xor").threshold == opts.xor_thr


def test_unknown_keys_name_the_nearest_valid_ones():
  with pytest.raises(ConfigError, match=r"unknown config key 'drnet.union_thresh'; nearest: union_thr"):
    drnet.DrnetOptions.from_config({"union_thresh": 0.1}, "drnet")
  with pytest.raises(ConfigError, match=r"'drnet.cdrp.stepz'; nearest: steps"):
    drnet.DrnetOptions.from_config(ml_collections.ConfigDict({"cdrp": {"stepz": 3}}), "drnet")
  with pytest.raises(ConfigError, match=r"'drnet.steps'"):  # CDRP keys live in drnet.cdrp
    drnet.DrnetOptions.from_config({"steps": 3}, "drnet")


@pytest.mark.parametrize("field,value", [("stage", "train"), ("combine", "and"), ("run_sliced", "x"),
                                         ("keep_fraction", 1.5), ("batch_size", 0)])
def test_bad_values_raise_config_errors(field, value):
  with pytest.raises(ConfigError, match=f"drnet.{field}"):
    drnet.DrnetOptions(**{field: value})
