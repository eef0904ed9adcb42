"""The decode schedule of docs/decode.md on the whole core: a model whose heads are one MPU chunk
wide on the ``tiny`` preset (d_head 8 = ``mpu.width``, so a head's cached K rows are contiguous
in HBM and in the scratchpad and each head's K load is one run of ``d_head·(R1+rows)`` elements
through R5), with an MLP wide enough for three weight chunks (the GELU in three pieces), and
weight rows of an odd number of chunks (d_model 40 = 5 chunks, d_ff 1,800 = 225), dense in HBM
and in the weight slots, which the MPU reads at that stride (geometry.weight_stride) and the DMA
loads two rows a run (geometry.weight_run_rows: 160 bytes, five of tiny's stripes). The
shipped ``micro`` model of tests/rtl/test_hw_program.py takes neither path on ``tiny`` (its
d_head of 32 has a padded scratchpad stride). As there: every HBM byte equal to fpgpt.sim's
exact mode, every instruction completed, each stream within 2 % of the timing model. Random
weights (seed 0): what is compared is the core against the simulator, not the tokens' sense.

The Verilator build is tests/rtl/test_hw_program.py's (same top, same folder)."""

from __future__ import annotations


import pytest

from program_case import make_case, run_and_check


def _spec():
    from fpgpt.models.spec import ModelSpec
    return ModelSpec(name="floor8", n_layer=1, n_head=5, d_model=40, d_ff=1800, vocab=257,
                     n_ctx=64, ln_eps=1e-5)


def _padded_spec():
    """Weight rows of 120 bytes, padded to 128 (four of tiny's 32-byte stripes;
    compiler/layout.row_pitch): W^T of the QKV, projection and FC1 products and ``wte``."""
    from fpgpt.models.spec import ModelSpec
    return ModelSpec(name="pad60", n_layer=1, n_head=2, d_model=60, d_ff=240, vocab=257,
                     n_ctx=64, ln_eps=1e-5)


def test_decode_floor_paths_are_compiled_for_this_case():
    """The case below takes both paths (else it would test nothing new)."""
    from fpgpt.compiler import compile_model
    from fpgpt.config import load_preset
    prog = compile_model(_spec(), load_preset("tiny"), prompt_len=2)
    dec = prog.stream("decode")
    k_loads = [i for i in dec if i.op == "LOAD" and "K[" in i.comment]
    assert k_loads and all(i["rows"] == 1 and i["rc"] == 5 for i in k_loads)
    assert sum(i.op == "GELU" for i in dec) == 3
    for name, k in (("qkv", 40), ("fc", 40), ("fc2", 1800)):    # two rows a run, on both sides
        runs = [i for i in dec if i.op == "LOAD" and f".{name}[" in i.comment]
        assert runs and all((i["cols"], i["hstride"], i["sstride"]) == (2 * k, 4 * k, 2 * k)
                            for i in runs), name
    padded = compile_model(_padded_spec(), load_preset("tiny"), prompt_len=2)
    assert any(i.op == "LOAD" and i["hstride"] == 128 and i["cols"] == 60
               for i in padded.stream("decode"))


@pytest.mark.parametrize("padded", [False, True], ids=["floor8", "pad60"])
def test_decode_floor_paths_on_the_core(tmp_path, rtl_build, padded):
    """(pad60: weight rows padded to whole stripes, the core's DMA loads them at the pitch.)"""
    spec = _padded_spec() if padded else _spec()
    case = make_case(model=spec, preset="tiny", prompt="de", new_tokens=3)
    case["model"] = spec.name
    run_and_check(case, rtl_build, tmp_path)
