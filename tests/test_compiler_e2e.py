"""End to end: compiled programs generate the reference's tokens, verify on every preset, and
their waits are hazard-free in the timing model."""

from __future__ import annotations

import pytest

from fpgpt.compiler import CompileError, compile_model
from fpgpt.compiler.pipeline import stream_regmax
from fpgpt.config import load_preset, preset_names
from fpgpt.isa import Program
from fpgpt.isa.verify import verify_stream
from fpgpt.models import ByteTokenizer, ModelError, Reference, get_spec, load_model, random_weights
from fpgpt.sim.hazards import TimingHazard
from fpgpt.sim.runner import generate
from fpgpt.sim.timing import simulate

PROMPTS = ["The assert statement", "def f(x):\n    return"]


def _weights(name: str):
    """The shipped model, or (until it is trained and committed) random weights of its shape."""
    try:
        return load_model(name)
    except ModelError:
        return random_weights(get_spec(name), seed=1, std=0.1)


@pytest.mark.parametrize("hw_name", ["tiny", "u280"])
@pytest.mark.parametrize("model", ["micro", "tiny"])
def test_generated_tokens_equal_the_fp16_reference(model, hw_name):
    w = _weights(model)
    hw = load_preset(hw_name)
    tok = ByteTokenizer()
    for text in PROMPTS:
        ids = tok.encode(text)
        prog = compile_model(w, hw, prompt_len=len(ids))
        got = generate(prog, ids, 10, mode="exact").tokens
        want = Reference(w, dtype="fp16").generate(ids, 10)
        assert got == want, (model, hw_name, text)


@pytest.mark.parametrize("hw_name,d_model", [("u280", 200), ("tiny", 60)])
def test_generation_with_weight_rows_padded_to_whole_stripes(hw_name, d_model):
    """Weight rows padded to whole DMA stripes (layout.row_pitch; u280: 400-byte rows in 2 KiB,
    tiny: 120-byte rows in 128 bytes): the LOADs use the pitch, the padding is never read, the
    tokens equal the FP16 reference and the waits are hazard-free."""
    from fpgpt.models import ModelSpec
    spec = ModelSpec("pad", n_layer=2, n_head=4 if d_model == 60 else 5, d_model=d_model,
                     d_ff=4 * d_model + 8, vocab=263, n_ctx=32)
    w = random_weights(spec, seed=3, std=0.1)
    hw = load_preset(hw_name)
    ids = ByteTokenizer().encode("pad me")
    prog = compile_model(w, hw, prompt_len=len(ids))
    pitch = 2 * hw.hbm.channels * hw.hbm.port_bits // 16 * -(-2 * d_model // (
        2 * hw.hbm.channels * hw.hbm.port_bits // 16))
    assert pitch > 2 * d_model
    assert any(i.op == "LOAD" and i["hstride"] == pitch and i["cols"] == d_model
               for i in prog.streams["decode"])
    want = Reference(w, dtype="fp16").generate(ids, 6)
    assert generate(prog, ids, 6, mode="exact").tokens == want
    simulate(prog, hw, prompt_len=len(ids), gen_len=3, check_hazards=True)
    # split over two cards: each card's shares of W^T padded the same way
    from fpgpt.compiler import compile_devices
    from fpgpt.sim.system import generate_system
    programs = compile_devices(w, hw, prompt_len=len(ids), devices=2)
    assert all(any(i.op == "LOAD" and i["hstride"] == pitch for i in p.streams["decode"])
               for p in programs)
    assert generate_system(programs, ids, 6).tokens == want


@pytest.mark.parametrize("sram_kib", [96, 48])
def test_generation_with_prefill_in_several_tiles(sram_kib):
    """Prefill tiles, each's rows in two halves (codegen.block); at 48 KiB the fc's W^T has
    more chunks than there are weight slots, so the second half loads it again."""
    w = _weights("micro")
    hw = load_preset("tiny").replace(**{"buffers.sram_kib": sram_kib})
    ids = list(range(3, 3 + 70))
    prog = compile_model(w, hw, prompt_len=len(ids))
    tiles = prog.meta["buffers"]["prefill"]["tiles"]
    assert tiles > 1
    fc = [i.fields["hbm"] for i in prog.streams["prefill"]
          if i.op == "LOAD" and i.comment.startswith("layer0.fc[")]
    assert (len(fc) > tiles * len(set(fc))) == (sram_kib == 48)
    assert generate(prog, ids, 4).tokens == Reference(w, dtype="fp16").generate(ids, 4)


def test_program_roundtrips_through_fpx_and_carries_metadata(tmp_path):
    w = _weights("micro")
    hw = load_preset("tiny")
    prog = compile_model(w, hw, prompt_len=5)
    prog.save(tmp_path / "m.fpx")
    back = Program.load(tmp_path / "m.fpx")
    assert back.streams == prog.streams and back.segments == prog.segments
    assert back.meta["artifact_name"] == hw.artifact_name and back.meta["prompt_len"] == 5
    assert back.registers == {"prefill": {1: 0}, "decode": {}}
    ids = [1, 2, 3, 4, 5]
    assert generate(back, ids, 3).tokens == generate(prog, ids, 3).tokens


@pytest.mark.parametrize("hw_name", sorted(preset_names()))
@pytest.mark.parametrize("model", ["micro", "tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"])
def test_programs_verify_on_every_preset(model, hw_name):
    hw = load_preset(hw_name)
    spec = get_spec(model)
    try:
        prog = compile_model(spec, hw, prompt_len=16, verify=False)
    except CompileError as e:
        assert hw_name == "tiny" and "GB of HBM" in str(e)
        return
    regions = [(r.addr, r.end) for r in prog.regions.values()]
    for name, stream in prog.streams.items():
        tiles = [(0, 16)] if name == "prefill" else [(0, 1)]
        verify_stream(name, stream, hw, regions=regions, max_regs=stream_regmax(spec, name, tiles))
    assert prog.segments == [] and not prog.meta["weights"]


@pytest.mark.parametrize("hw_name,model,prompt_len", [("tiny", "micro", 12), ("u280", "tiny", 20),
                                                      ("dfx", "tiny", 9)])
def test_waits_are_hazard_free_in_the_timing_model(hw_name, model, prompt_len):
    hw = load_preset(hw_name)
    prog = compile_model(model, hw, prompt_len=prompt_len)
    simulate(prog, hw, prompt_len=prompt_len, gen_len=4, check_hazards=True)


def test_the_hazard_check_catches_a_program_without_waits():
    hw = load_preset("tiny")
    prog = compile_model("micro", hw, prompt_len=8)
    prog.streams = {k: [i.replace(waits={"dma": 0, "mpu": 0, "vpu": 0, "net": 0}) for i in s]
                    for k, s in prog.streams.items()}
    with pytest.raises(TimingHazard):
        simulate(prog, hw, prompt_len=8, gen_len=2, check_hazards=True)


def test_decode_is_a_few_thousand_instructions_per_token_for_gpt2_xl():
    # 5,114 since the residual VADDs went in pieces behind fc2's chunks (docs/decode.md), 5,984
    # since chunks are whole MPU super-groups (fc2's 80 rows where 144 fit, tile.py): about 125
    # a layer, not one per row or per weight chunk's row
    prog = compile_model("gpt2-xl", load_preset("u280"), prompt_len=8, verify=False)
    assert len(prog.streams["decode"]) < 6500


def test_bad_requests_raise_compile_errors():
    hw = load_preset("u280")
    with pytest.raises(CompileError, match="prompt_len must be an integer in 1..127"):
        compile_model("micro", hw, prompt_len=128)
    with pytest.raises(CompileError, match="hw.devices = 2"):
        compile_model("micro", hw.replace(devices=2), prompt_len=4)
    with pytest.raises(CompileError, match="gpt2-xl needs .* GB of HBM"):
        compile_model("gpt2-xl", load_preset("tiny"), prompt_len=4)
