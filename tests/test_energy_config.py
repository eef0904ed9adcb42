"""[power] constants: every one has a range and a source; a measured figure collapses its range."""

import tomllib

import pytest

from fpgpt.config import POWER_CONSTANTS, ConfigError, HardwareConfig, load_config, load_preset


@pytest.mark.parametrize("name", ["u280", "dfx", "u55c", "tiny"])
def test_every_power_constant_has_a_range_and_a_source(name):
    c = load_preset(name)
    for k in POWER_CONSTANTS:
        lo, hi = c.power.range_of(k)
        assert lo <= getattr(c.power, k) <= hi
        assert f"power.{k}" in c.sources, k


def test_measured_value_without_range_collapses_it(tmp_path):
    d = tomllib.loads(load_preset("u280").to_toml())
    d["power"]["static_w"] = 27.4
    del d["power"]["static_w_range"]
    p = tmp_path / "mine.toml"
    p.write_text(HardwareConfig.from_dict(d).to_toml())
    c = load_config(str(p))
    assert c.power.static_w == 27.4
    assert c.power.range_of("static_w") == (27.4, 27.4)
    assert c.power.range_of("pj_per_mac") == (4.7, 28.0)


def test_value_outside_its_range_is_refused():
    u = load_preset("u280")
    with pytest.raises(ConfigError, match=r"power.static_w = 90.0 lies outside power.static_w_range"):
        u.replace(**{"power.static_w": 90.0})
    assert u.replace(**{"power.static_w": 90.0, "power.static_w_range": None}).power.static_w == 90.0
    with pytest.raises(ConfigError, match=r"power.link_w_range must be \[low, high\]"):
        u.replace(**{"power.link_w_range": [1.0]})
