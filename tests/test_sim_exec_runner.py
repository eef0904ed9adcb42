"""Host runner: the generation protocol of docs/execution.md on a hand-written toy program, and
end to end on a compiled shipped model against the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from fpgpt.config import load_preset
from fpgpt.isa import Instr, Program, Region
from fpgpt.sim.runner import GenerationError, generate

HW = load_preset("tiny")
V, P, N_CTX = 16, 3, 20
TOK_IN, TOK_OUT, TABLE = 0x0, 0x100, 0x1000


def mk(op, **kw):
    return Instr.make(op, **kw)


def toy_program() -> Program:
    """A 'model' whose next token is (previous token + 1) mod V, following the register ABI:
    row t of an FP16 table peaks at column (t + 1) % V; GATHER the row, ARGMAX it."""
    table = np.zeros((V, V), np.float16)
    table[np.arange(V), (np.arange(V) + 1) % V] = 1.0
    step = lambda idx, ra: [  # noqa: E731
        mk("GATHER", sram=0, hbm=TABLE, idx=idx, rows=1, cols=V, hstride=2 * V, sstride=V, ra=ra),
        mk("ARGMAX", rd=2, a=0, cols=V),
        mk("STR", rs=2, hbm=TOK_OUT, ra=4)]
    prefill = ([mk("SETI", rd=4, imm=0), mk("SETI", rd=5, imm=P - 1)] + step(TOK_IN, 5)
               + [mk("SETI", rd=1, imm=P), mk("SETI", rd=4, imm=1), mk("HALT")])
    decode = ([mk("ADDI", rd=5, rs=4, imm=-1)] + step(TOK_OUT, 5)
              + [mk("ADDI", rd=1, rs=1, imm=1), mk("ADDI", rd=4, rs=4, imm=1),
                 mk("ADDI", rd=3, rs=3, imm=-1), mk("BNZ", rs=3, target=0), mk("HALT")])
    regions = {"tokens_in": Region("tokens_in", TOK_IN, 4 * P, (P,), "i32"),
               "tokens_out": Region("tokens_out", TOK_OUT, 4 * N_CTX, (N_CTX,), "i32"),
               "table": Region("table", TABLE, table.nbytes, (V, V))}
    return Program({"prefill": prefill, "decode": decode}, regions, [(TABLE, table.tobytes())],
                   {"prefill": {1: 0}},
                   {"prompt_len": P, "n_ctx": N_CTX, "vocab": V, "config": HW.to_dict()})


@pytest.mark.parametrize("new", [1, 8])
def test_toy_generation_follows_the_abi(new):
    prog = Program.from_bytes(toy_program().to_bytes())  # the .fpx round trip keeps what we need
    res = generate(prog, [3, 9, 14], new)
    assert res.tokens == [(14 + 1 + i) % V for i in range(new)]
    assert res.all_tokens[:P] == [3, 9, 14]
    assert [s.stream for s in res.streams] == (["prefill"] if new == 1 else ["prefill", "decode"])
    if new > 1:
        assert res.streams[1].by_op["ARGMAX"] == new - 1
    assert res.instructions == sum(s.instructions for s in res.streams) > 0


@pytest.mark.parametrize("prompt,new,match", [
    ([1, 2], 4, "compiled for prompt_len = 3"),
    ([1, 2, 3], 18, "exceeds the context n_ctx = 20"),
    ([1, 2, 99], 2, "token id 99 is outside the vocabulary"),
    ([1, 2, 3], 0, "max_new_tokens must be a positive integer"),
])
def test_bad_requests_are_one_line_errors(prompt, new, match):
    with pytest.raises(GenerationError, match=match) as e:
        generate(toy_program(), prompt, new)
    assert "\n" not in str(e.value)


def test_program_without_config_needs_hw():
    prog = toy_program()
    del prog.meta["config"]
    with pytest.raises(GenerationError, match="pass hw="):
        generate(prog, [0, 0, 0], 2)
    assert generate(prog, [0, 0, 0], 2, hw=HW).tokens == [1, 2]


def test_shapes_only_program_cannot_generate():
    prog = toy_program()
    prog.meta["weights"] = False
    with pytest.raises(GenerationError, match="carries no weights"):
        generate(prog, [0, 0, 0], 2)

# ------------------------------------------------------------------------------ end to end
def _compile_fn():
    compiler = pytest.importorskip("fpgpt.compiler")
    fn = getattr(compiler, "compile_model", None)
    if fn is None:
        pytest.skip("fpgpt.compiler has no compile function yet (compiler not landed)")
    return fn


def _end_to_end(weights, prompt, new=8):
    from fpgpt.models import Reference
    prog = _compile_fn()(weights, HW, prompt_len=len(prompt))
    res = generate(prog, prompt, new)
    assert res.tokens == Reference(weights, dtype="fp16").generate(prompt, new)
    return res


def test_shipped_micro_model_end_to_end_matches_fp16_reference():
    _compile_fn()
    from fpgpt.models import ModelError, load_model
    try:
        weights = load_model("micro")
    except ModelError as e:
        pytest.skip(f"shipped model not available: {e}")
    _end_to_end(weights, list(b"def f(x):"))


def test_random_micro_model_end_to_end_matches_fp16_reference():
    """Always runs once the compiler exists. std=0.2 spreads the logits so that greedy picks
    are far from ties: the check is then on the simulator and compiler, not on rounding luck."""
    _compile_fn()
    from fpgpt.models import get_spec, random_weights
    res = _end_to_end(random_weights(get_spec("micro"), seed=1, std=0.2), list(range(40, 52)))
    assert [s.stream for s in res.streams] == ["prefill", "decode"]
    assert res.streams[1].by_op["ARGMAX"] == 7 and res.streams[1].macs > 0

