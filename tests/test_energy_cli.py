"""fpgpt compare / gpu-bench / report on small configurations (GPT-2 small, short lengths)."""

import json
import time

import pytest
from click.testing import CliRunner

from fpgpt.cli import main
from fpgpt.energy.gpu_bench import baseline_record


def _run(*args):
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


def test_gpu_bench_without_a_gpu_says_so_in_one_line():
    code, out = _run("gpu-bench", "--model", "gpt2")
    assert code == 2
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fpgpt: error: no CUDA GPU"), out
    code, out = _run("gpu-bench", "--model", "gpt5")
    assert code == 2 and "unknown model 'gpt5'" in out


def test_compare_json_numbers_and_a_measured_baseline(tmp_path):
    rec = baseline_record(model="gpt2", prompt_len=8, gen_len=4, mode="eager", full_s=0.05,
                          prefill_s=0.02, full_mj=6000.0, prefill_mj=2000.0, repeats=1,
                          provenance={"gpu_name": "Test GPU", "driver": "0"})
    b = tmp_path / "base.json"
    b.write_text(json.dumps(rec))
    code, out = _run("compare", "--model", "gpt2", "--hw", "u280", "--prompt-len", "8",
                     "--gen-len", "4", "--gpus", "v100x4,h100", "--baseline", str(b), "--json")
    assert code == 0, out
    d = json.loads(out[out.index("{"):])
    des = d["design"]
    assert des["kind"] == "simulated" and des["cards"] == 1
    assert des["ms_per_token"]["value"] > 0
    tpj = des["tokens_per_j"]
    assert tpj["lo"] <= tpj["value"] <= tpj["hi"]
    assert des["j_per_token"]["value"] == pytest.approx(1 / tpj["value"])
    labels = [g["label"] for g in d["gpus"]]
    assert labels == ["4 x v100", "h100", "Test GPU (measured)"]
    for g in d["gpus"]:
        assert g["speedup"]["value"] == pytest.approx(g["ms_per_token"]["value"]
                                                      / des["ms_per_token"]["value"])
        assert g["energy_efficiency_ratio"]["value"] == pytest.approx(
            tpj["value"] / g["tokens_per_j"]["value"])
    meas = d["gpus"][2]
    assert meas["kind"] == "measured" and meas["ms_per_token"]["value"] == pytest.approx(10.0)


@pytest.mark.parametrize("args, msg", [
    (["--gpus", "v900"], "unknown GPU 'v900'"),
    (["--gen-len", "1"], "--gen-len >= 2"),
    (["--baseline", "nowhere.json"], "GPU baseline 'nowhere.json' not found"),
    (["--hw", "nope"], "unknown hardware preset 'nope'")])
def test_compare_bad_input_is_one_line_exit_2(args, msg):
    code, out = _run("compare", "--model", "gpt2", "--prompt-len", "8", *args)
    assert code == 2, out
    assert msg in out and "Traceback" not in out


class _PairedClock:
    """``perf_counter`` for gpu_bench and a fake energy counter drawing 100 W, read from one
    clock sample per pair of calls: measure() reads them in pairs (energy then time at the
    start of a batch, time then energy at its end), so on a loaded machine a preemption between
    the two reads cannot skew energy against time (it once moved the 100 W by over 5 %)."""

    def __init__(self):
        self.pending = None

    def _sample(self) -> float:
        if self.pending is None:
            self.pending = time.perf_counter()
            return self.pending
        v, self.pending = self.pending, None
        return v

    def perf_counter(self) -> float:
        return self._sample()

    def energy_mj(self) -> float:
        return self._sample() * 1e5


@pytest.mark.parametrize("cache", [None, "static"])
def test_gpu_bench_measurement_loop_on_cpu(cache, monkeypatch):
    """The HF generate loop gpu-bench times, run on the CPU with a tiny GPT-2 and a fake
    energy counter drawing 100 W: decode time and energy per token come out consistent."""
    import types

    import torch

    from fpgpt.energy import gpu_bench
    from fpgpt.energy.gpu_bench import build_model, measure
    from fpgpt.models import ModelSpec
    spec = ModelSpec("t", n_layer=2, n_head=2, d_model=32, d_ff=64, vocab=100, n_ctx=64)
    m, label = build_model(spec, device="cpu", dtype=torch.float32)
    assert label == "t"
    if cache:
        m.generation_config.cache_implementation = cache
    ids = torch.randint(0, 100, (1, 8))
    clock = _PairedClock()
    monkeypatch.setattr(gpu_bench, "time", types.SimpleNamespace(perf_counter=clock.perf_counter))
    full_s, pre_s, full_mj, pre_mj = measure(m, ids, gen_len=6, repeats=2, warmup=1,
                                             energy_mj=clock.energy_mj, sync=lambda: None)
    assert clock.pending is None            # every read was one of a pair
    # both are wall times of separate runs on a shared CPU: their order is not the code's,
    # so only their sign is checked (a loaded machine once timed the prefill the longer)
    assert full_s > 0 and pre_s > 0
    assert full_mj == pytest.approx(1e5 * full_s) and pre_mj == pytest.approx(1e5 * pre_s)
    rec = baseline_record(model=label, prompt_len=8, gen_len=6, mode="eager", full_s=full_s,
                          prefill_s=pre_s, full_mj=full_mj, prefill_mj=pre_mj, repeats=2,
                          provenance={"gpu_name": "cpu"})
    if rec["ms_per_token"] > 0:     # decode slower than the prefill-only runs (not on a loaded CPU)
        assert rec["avg_power_w"] == pytest.approx(100.0, rel=1e-6)
