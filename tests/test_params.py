"""Numeric parameter validation (demine._params.check_number) as a TOML chain
reaches it: every bad number is a ConfigError naming the stage and the
parameter, never an OverflowError/ValueError from deep inside."""

from __future__ import annotations

import numpy as np
import pytest

from demine.errors import ConfigError
from demine.process import load_chain

_CHAIN = """
[chain]
kind = "emi"
[[step]]
name = "emi.soil"
gate_times = [1e-5, 2e-5, 4e-5, 8e-5, 1.6e-4]
learn = true
{key} = {value}
"""


@pytest.mark.parametrize("key", ["learn_block", "learn_min"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e21", "100000000000000000000000"])
def test_integer_parameter_bad_numbers_name_the_parameter(key, value):
    """An integer parameter given inf/nan or beyond int64 in a TOML chain: a
    ConfigError naming it (was an uncaught OverflowError for inf and 1e21, the
    latter only when the first chunk was processed)."""
    with pytest.raises(ConfigError, match=key):
        chain = load_chain(_CHAIN.format(key=key, value=value))
        chain.process(np.ones((3, 5), dtype=np.float32))


def test_good_integer_values_still_pass():
    chain = load_chain(_CHAIN.format(key="learn_min", value="2000.0"))
    assert chain.history()[0]["params"]["learn_min"] == 2000
    big = load_chain(_CHAIN.format(key="learn_min", value=str(2 ** 62)))
    assert big.history()[0]["params"]["learn_min"] == 2 ** 62
    assert big.process(np.ones((3, 5), dtype=np.float32)).shape == (3, 5)
