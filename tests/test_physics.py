"""No design decodes faster than its memory floor or prefills faster than its MPU peak.

For every GPT-2 size and every preset whose HBM holds it: simulated decode time per token
>= weight bytes read per token / peak HBM bandwidth, and prefill time >= its FLOPs / MPU peak;
and decode within ``CEILING`` times the floor.
"""

import pytest

from fpgpt.compiler import CompileError, compile_model
from fpgpt.config import load_preset
from fpgpt.models import get_spec
from fpgpt.sim import simulate

PROMPT, GEN = 32, 3
SIZES = ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"]
CEILING = 3.0     # decode time per token / HBM floor that the shipped designs stay under


def prefill_flops(spec, p):
    d, f = spec.d_model, spec.d_ff
    weights = p * spec.n_layer * 2 * (4 * d * d + 2 * d * f)
    attention = spec.n_layer * 2 * 2 * d * (p * (p + 1) // 2)   # causal q.k and p.v
    return weights + attention + 2 * spec.vocab * d               # LM head on the last row


@pytest.mark.parametrize("preset", ["u280", "dfx", "u55c"])
@pytest.mark.parametrize("size", SIZES)
def test_simulated_time_respects_physical_floors(preset, size):
    hw, spec = load_preset(preset), get_spec(size)
    program = compile_model(spec, hw, prompt_len=PROMPT, verify=False)
    r = simulate(program, hw, prompt_len=PROMPT, gen_len=GEN)
    floor_s = spec.weight_bytes_per_token() / hw.hbm_peak_bytes_per_s
    assert r.ms_per_token / 1e3 >= floor_s
    # bytes the simulation itself moved cannot arrive faster than the peak either
    assert r.ms_per_token / 1e3 >= r.hbm_bytes_per_token / hw.hbm_peak_bytes_per_s
    assert r.hbm_bytes_per_token >= spec.weight_bytes_per_token()
    assert r.ttft_ms / 1e3 >= prefill_flops(spec, PROMPT) / hw.mpu_peak_flops
    assert 0 < r.hbm_bw_utilization <= 1
    # And no shipped design falls far from its floor: a regression guard (a 1 KiB HBM
    # interleave once sent every dfx transfer down the DMA's element path, 1,000x the floor).
    assert r.ms_per_token / 1e3 <= CEILING * floor_s, f"{r.ms_per_token:.3f} ms/token"


def test_a_model_larger_than_hbm_is_refused_with_sizes():
    with pytest.raises(CompileError) as e:
        compile_model(get_spec("gpt2-xl"), load_preset("tiny"), prompt_len=8)
    msg = str(e.value)
    assert "HBM" in msg and "gpt2-xl" in msg and ("GB" in msg or "MiB" in msg)
