"""Energy model (fpgpt.energy.model) and GPU baselines (fpgpt.energy.gpu): hand-computed figures,
ranges, calibration, baseline files. No simulation runs here (see test_energy_cli.py)."""

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from fpgpt.config import load_preset
from fpgpt.energy import (COMPONENTS, EnergyError, GPUError, calibration, energy_of, estimate,
                          load_baseline, parse_gpu, stream_energy)
from fpgpt.energy.gpu_bench import baseline_record
from fpgpt.energy.model import VPU_FP32_OPS
from fpgpt.models import get_spec

EVENTS = {"mpu_macs": 1e9, "vpu_ops.GELU": 1e6, "vpu_ops.VADD": 2e6, "vpu_ops.VCOPY": 5e6,
          "spad_read_bytes": 3e9, "spad_write_bytes": 1e9, "hbm_read_bytes": 2e9,
          "hbm_write_bytes": 1e8, "hbm_activations": 2e6, "link_bytes": 0.0}


def _stream(ms=10.0, events=EVENTS, name="decode"):
    return SimpleNamespace(name=name, ms=ms, events=dict(events), hbm_bytes=2.1e9)


def test_stream_energy_by_hand():
    hw = load_preset("u280")
    p = hw.power
    e = stream_energy(_stream(), hw, tokens=5)
    j = {c: e.joules[c].value for c in COMPONENTS}
    assert j["static"] == pytest.approx(p.static_w * 0.010)
    assert j["hbm"] == pytest.approx(2.1e9 * 8 * p.pj_per_hbm_bit * 1e-12
                                     + 2e6 * p.nj_per_hbm_activation * 1e-9)
    assert j["mac"] == pytest.approx(1e9 * p.pj_per_mac * 1e-12)
    assert j["vpu"] == pytest.approx((1e6 * VPU_FP32_OPS["GELU"] + 2e6) * p.pj_per_vpu_op * 1e-12)
    assert j["scratchpad"] == pytest.approx(4e9 * p.pj_per_sram_byte * 1e-12)
    assert j["link"] == 0.0             # one card: links down, nothing sent
    assert e.j_per_token.value == pytest.approx(sum(j.values()) / 5)
    assert e.avg_power_w.value == pytest.approx(sum(j.values()) / 0.010)


def test_ranges_come_from_the_constants_ends():
    hw = load_preset("u280")
    e = stream_energy(_stream(), hw, tokens=1)
    lo_static, hi_static = hw.power.range_of("static_w")
    assert e.joules["static"].lo == pytest.approx(lo_static * 0.010)
    assert e.joules["static"].hi == pytest.approx(hi_static * 0.010)
    for c in COMPONENTS:
        s = e.joules[c]
        assert s.lo <= s.value <= s.hi
    tpj = e.tokens_per_j
    assert tpj.lo == pytest.approx(1 / e.total.hi) and tpj.hi == pytest.approx(1 / e.total.lo)


def test_a_measured_static_power_collapses_its_range():
    hw = load_preset("u280").replace(**{"power.static_w": 27.4, "power.static_w_range": None})
    s = stream_energy(_stream(), hw, tokens=1).joules["static"]
    assert s.lo == s.value == s.hi == pytest.approx(0.274)


def test_cards_sum_and_links_cost_when_the_ring_is_up():
    hw = load_preset("u280").replace(devices=2)
    ev = dict(EVENTS, link_bytes=1e6)
    one = stream_energy(_stream(events=ev), load_preset("u280"), tokens=1)
    two = stream_energy(_stream(events=ev), hw, tokens=1)           # same events on each card
    assert two.joules["mac"].value == pytest.approx(2 * one.joules["mac"].value)
    link = 2 * (1e6 * 8 * hw.power.pj_per_link_bit * 1e-12 + hw.power.link_w * hw.link.count * 0.010)
    assert two.joules["link"].value == pytest.approx(link)
    per = stream_energy(_stream(events=ev), hw, tokens=1, events=[ev, dict(ev, mpu_macs=0.0)])
    assert per.joules["mac"].value == pytest.approx(one.joules["mac"].value)
    with pytest.raises(EnergyError, match="3 cards' events for a 2-card design"):
        stream_energy(_stream(), hw, tokens=1, events=[ev] * 3)


def test_results_without_events_need_a_spec_and_say_estimated():
    hw = load_preset("u280")
    res = {"model": "gpt2", "prompt_len": 8, "gen_len": 4,
           "streams": {"prefill": {"name": "prefill", "ms": 5.0, "hbm_bytes": 3e8},
                       "decode": {"name": "decode", "ms": 3.0, "hbm_bytes": 7e8}}}
    with pytest.raises(EnergyError, match="no event counts"):
        energy_of(res, hw)
    e = energy_of(res, hw, spec=get_spec("gpt2"))
    assert e.events == "estimated" and e.decode.tokens == 3
    assert e.decode.joules["mac"].value > 0 and e.decode.joules["hbm"].value > 0
    res["streams"]["decode"]["events"] = EVENTS
    res["streams"]["prefill"]["events"] = EVENTS
    assert energy_of(res, hw).events == "simulated"


def test_gpu_model_reproduces_its_calibration_points():
    cal = calibration()
    assert 0.3 < cal["params"]["ft"]["eta"] <= 1.0
    for r in cal["rows"]:
        assert abs(r["error"]) < 0.03, r       # FasterTransformer 3 points, HF eager 1 point


def test_gpu_estimates_obey_the_bandwidth_floor_and_tensor_parallel_costs():
    spec = get_spec("gpt2-xl")
    a = estimate(spec, "a100-80")
    floor_ms = spec.weight_bytes_per_token() / 2039e9 * 1e3
    assert a.ms_per_token.lo > floor_ms
    v1, v4 = estimate(spec, "v100"), estimate(spec, "v100x4")
    assert v4.ms_per_token.value < v1.ms_per_token.value          # bytes split over 4 GPUs
    assert v4.ms_per_token.value > v1.ms_per_token.value / 4      # launches + all-reduces stay
    assert v4.power_w.value > 3 * v1.power_w.lo
    eager = estimate(spec, "v100x4:hf-eager")
    assert eager.ms_per_token.value > 4 * v4.ms_per_token.value
    t = a.tokens_per_j
    assert t.lo <= t.value <= t.hi


@pytest.mark.parametrize("text, msg", [
    ("v200", "unknown GPU 'v200'"), ("a100-80:tensorrt", "unknown GPU software stack 'tensorrt'"),
    ("h100x32", "GPU count must be 1..16")])
def test_bad_gpu_names(text, msg):
    with pytest.raises(GPUError, match=msg):
        parse_gpu(text)
    assert parse_gpu("a100-40x4:hf-eager") == ("a100-40", 4, "hf-eager")


def test_baseline_file_round_trip(tmp_path):
    rec = baseline_record(model="gpt2", prompt_len=128, gen_len=129, mode="eager", full_s=1.5,
                          prefill_s=0.22, full_mj=150_000.0, prefill_mj=20_000.0, repeats=3,
                          provenance={"gpu_name": "NVIDIA H100 80GB HBM3", "driver": "550"})
    assert rec["ms_per_token"] == pytest.approx(10.0)
    assert rec["j_per_token"] == pytest.approx(130.0 / 128)
    p = tmp_path / "b.json"
    p.write_text(json.dumps(rec))
    b = load_baseline(p)
    assert b.kind == "measured" and b.ms_per_token.value == pytest.approx(10.0)
    assert b.tokens_per_j.value == pytest.approx(128 / 130.0)
    p.write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(GPUError, match="not an fpgpt gpu-bench baseline"):
        load_baseline(p)


def test_energy_reads_results_and_never_runs_the_simulator():
    root = Path(__file__).resolve().parents[1] / "fpgpt" / "energy"
    for f in root.glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2 and node.module:
                assert node.module.split(".")[0] not in {"sim", "compiler", "hw", "report",
                                                         "cli", "sweep"}, f
