"""The sweep's fitted resource model (fpgpt/sweep/resources.py): regenerable from its data,
exact where it was fitted on a whole core, its held-out error recorded, sane in its trends."""

from __future__ import annotations

import pytest

from fpgpt.config import load_preset
from fpgpt.sweep import resources as rm
from fpgpt.sweep import synth_data as sd


def test_the_shipped_model_is_the_fit_of_the_shipped_data():
    model, shipped = rm.fit_model(), rm.load_model()
    for b, m in shipped["blocks"].items():
        for res, coef in m["coef"].items():
            assert model["blocks"][b]["coef"][res] == pytest.approx(coef, rel=1e-9, abs=1e-6), (b, res)
    # the held-out errors to the last few digits: a least-squares fit's last bits follow the
    # BLAS build and its threads (a fresh clone gave 2.924537189933493 against the shipped
    # 2.9245371899335053 %, 2026-12-07)
    got, want = model["error"]["total"], shipped["error"]["total"]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert {k: v for k, v in g.items() if not isinstance(v, float)} == \
            {k: v for k, v in w.items() if not isinstance(v, float)}
        for k, v in w.items():
            if isinstance(v, float):
                assert g[k] == pytest.approx(v, rel=1e-9, abs=1e-9), (g["config"], k)


def test_data_has_provenance_and_the_held_out_configuration():
    data = sd.load_synth_data()
    assert "docs/rtl.md" in data["provenance"]["published"]
    assert "yosys" in data["provenance"]["measured"].lower()
    configs = {r["config"] for r in data["records"]}
    assert set(rm.HELD_OUT) <= configs and "u280" in configs
    measured = [r for r in data["records"] if r["source"] == "measured"]
    assert measured and all(r["yosys_s"] is not None for r in measured)


def test_u280_operator_counts_match_the_published_report():
    """The fitted FP operator counts give the u280 report's instance counts exactly."""
    model = rm.load_model()
    p = sd.config_params(load_preset("u280").replace(**sd.PUBLISHED_U280_DESIGN))
    f = rm.features(p)
    counts: dict[str, float] = {}
    for b, per in model["op_counts"].items():
        n = rm._count(b, p)
        xs = [f[x] for x in model["blocks"][b].get("op_features", rm.OP_FEATURES)]
        for kind, coef in per.items():
            counts[kind] = counts.get(kind, 0) + n * round(sum(c * x for c, x in zip(coef, xs)))
    assert {k: v for k, v in counts.items() if v} == sd.PUBLISHED_U280_OPS


def test_estimate_u280_and_trends():
    # the design the published report measured
    base = load_preset("u280").replace(**sd.PUBLISHED_U280_DESIGN)
    u280 = rm.estimate(base)
    for res, v in sd.PUBLISHED_U280_TOTAL.items():      # fitted on it; BRAM is a constant fit
        assert u280["total"][res] == pytest.approx(v, rel=0.02, abs=10 if res == "BRAM36" else 0), res
    assert "held-out" in u280["note"]
    # today's preset, 8 lanes of which 4 without the special functions (vpu.special_ratio 2),
    # costs more than 4 full lanes and less than 8
    lut = {name: rm.estimate(load_preset("u280").replace(**ov))["total"]["LUT"]
           for name, ov in (("today", {}), ("four", {"vpu.width": 4, "vpu.special_ratio": 1}),
                            ("eight", {"vpu.special_ratio": 1}))}
    assert lut["four"] < lut["today"] < lut["eight"]
    more_lanes = rm.estimate(base.replace(**{"mpu.lanes": 32}))["total"]
    wider_vpu = rm.estimate(base.replace(**{"vpu.width": 16}))["total"]
    smaller = rm.estimate(base.replace(**{"buffers.sram_kib": 8192}))["total"]
    assert more_lanes["LUT"] > u280["total"]["LUT"] and more_lanes["DSP48E2"] > u280["total"]["DSP48E2"]
    assert wider_vpu["LUT"] > u280["total"]["LUT"]
    assert smaller["URAM"] == u280["total"]["URAM"] / 2


def test_held_out_error_is_measured_and_stated():
    err = rm.load_model()["error"]
    held = {e["resource"]: e for e in err["total"] if e["config"] in rm.HELD_OUT}
    assert set(held) == {"LUT", "FF", "DSP48E2", "BRAM36"}
    for e in held.values():
        assert e["synth"] > 0 and e["error_pct"] == pytest.approx(
            100 * (e["model"] - e["synth"]) / e["synth"])
    assert err["lut_error_pct"] == held["LUT"]["error_pct"]
