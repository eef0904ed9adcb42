"""The compiled dispatch loop (fpgpt/sim/fastloop.c) gives what the Python loop gives, to the bit.

Every result field is compared: cycles, busy and wait cycles per unit and cause, per-mnemonic
breakdown, events, HBM bytes and channel work, instruction counts, the registers and the HBM
model's state left behind, and the progress calls. The programs are the pinned ones of
tests/test_sim_speed_golden.py (stripe and element DMA paths, GATHER, V^T stores, register-
dependent shapes, refresh modelled or not, balanced and per-channel HBM demands) on their stored
presets, and the shipped models compiled now on the shipped presets.
"""

import dataclasses
import gzip
from pathlib import Path

import pytest

from fpgpt.compiler import compile_devices, compile_model
from fpgpt.config import load_config, load_preset
from fpgpt.isa import Instr, Program
from fpgpt.models import get_spec, load_model
from fpgpt.sim import fastloop, timing
from fpgpt.sim.control import Registers
from fpgpt.sim.hbm import HBMModel
from fpgpt.sim.system import simulate_system
from fpgpt.sim.timing import TimingError, simulate, time_stream

DATA = Path(__file__).resolve().parent / "data" / "sim_golden"
GOLDEN = sorted(p.name[:-len(".fpgpt.gz")] for p in DATA.glob("*.fpgpt.gz"))
I = Instr.make


def _both(monkeypatch, fn):
    """fn() with the native loop, then with the Python loop: the two results."""
    monkeypatch.delenv(fastloop.LOOP_ENV, raising=False)
    native = fn()
    monkeypatch.setenv(fastloop.LOOP_ENV, "python")
    python = fn()
    monkeypatch.delenv(fastloop.LOOP_ENV)
    return native, python


def _everything(result):
    return [dataclasses.asdict(s) for s in result.streams]


def test_the_native_loop_is_built_here():
    # make test's machines have a C compiler (README): the fast loop must be what runs there
    assert fastloop.status().startswith("native"), fastloop.status()


@pytest.mark.parametrize("case", GOLDEN)
def test_pinned_programs_time_the_same_in_both_loops(case, monkeypatch):
    model, preset, prompt, gen = case.split("_")
    hw = load_config(str(DATA / f"{preset}.toml"))
    program = Program.from_bytes(gzip.decompress((DATA / f"{case}.fpgpt.gz").read_bytes()))
    exact = case.startswith("odd")             # the per-channel HBM model on some of them

    def go():
        calls = []
        r = simulate(program, hw, prompt_len=int(prompt), gen_len=int(gen), exact_hbm=exact,
                     progress=lambda s, n: calls.append((s, n)))
        return _everything(r), calls
    native, python = _both(monkeypatch, go)
    assert native == python


@pytest.mark.parametrize("model,preset", [("micro", "tiny"), ("tiny", "u280"), ("tiny", "dfx"),
                                          ("micro", "u55c")])
def test_shipped_models_time_the_same_in_both_loops(model, preset, monkeypatch):
    hw = load_preset(preset)
    program = compile_model(load_model(model), hw, prompt_len=12)

    def go():
        regs = Registers(program.registers.get("prefill", {}))
        hbm_state = []
        orig = HBMModel.__init__

        def keep(self, *a, **k):                  # the HBM model each stream leaves behind
            orig(self, *a, **k)
            hbm_state.append(self)
        monkeypatch.setattr(HBMModel, "__init__", keep)
        p = time_stream(program, "prefill", hw, regs)
        regs[3] = 5
        d = time_stream(program, "decode", hw, regs)
        monkeypatch.setattr(HBMModel, "__init__", orig)
        return ([dataclasses.asdict(p), dataclasses.asdict(d)], list(regs.v),
                [(h._base.tolist(), h._lo, h._shift, h._maxbase) for h in hbm_state])
    native, python = _both(monkeypatch, go)
    assert native == python


def test_a_cleared_cost_cache_gives_the_same_figures(monkeypatch):
    # at its size limit the Python loop's cost cache starts again, and so must the C one's
    hw = load_preset("tiny")
    program = compile_model(load_model("micro"), hw, prompt_len=4)
    monkeypatch.setattr(timing, "_COST_CACHE_LIMIT", 3)
    native, python = _both(monkeypatch, lambda: _everything(
        simulate(program, hw, prompt_len=4, gen_len=20)))
    assert native == python


@pytest.mark.parametrize("loop", ["native", "python"])
def test_errors_are_the_same_one_line_errors(loop, monkeypatch):
    if loop == "python":
        monkeypatch.setenv(fastloop.LOOP_ENV, "python")
    hw = load_preset("u280")
    vadd = I("VADD", dst=0, a=0, b=0, rows=1, cols=64, ldd=64, lda=64, ldb=64)
    with pytest.raises(TimingError, match=r"ran off the end of the stream at instruction 1 "
                                          r"\(missing HALT\?\)"):
        time_stream(Program({"s": [vadd]}), "s", hw, Registers())
    with pytest.raises(TimingError, match="stopped after 100 instructions without HALT"):
        time_stream(Program({"s": [I("SETI", rd=1, imm=1), I("BNZ", rs=1, target=1)]}), "s",
                    hw, Registers(), max_steps=100)


def test_a_progress_callback_error_propagates(monkeypatch):
    monkeypatch.setattr(timing, "_PROGRESS_EVERY", 4)
    hw = load_preset("u280")
    prog = Program({"s": [I("SETI", rd=1, imm=50), I("ADDI", rd=1, rs=1, imm=-1),
                          I("BNZ", rs=1, target=1), I("HALT")]})

    def boom(stream, n):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        time_stream(prog, "s", hw, Registers(), progress=boom)


@pytest.mark.parametrize("model,preset,prompt,gen", [
    ("gpt2-medium", "u280", 128, 12),
    ("gpt2-xl", "u280", 32, 4),
    ("gpt2-medium", str(Path(__file__).resolve().parents[1] / "examples" / "u280-300mhz.toml"),
     64, 8),                                   # 300 MHz: the ports outrun the memory, refresh on
])
def test_gpt2_sizes_time_the_same_in_both_loops(model, preset, prompt, gen, monkeypatch):
    hw = load_config(preset)
    program = compile_model(get_spec(model), hw, prompt_len=prompt)
    native, python = _both(monkeypatch, lambda: _everything(
        simulate(program, hw, prompt_len=prompt, gen_len=gen)))
    assert native == python


@pytest.mark.parametrize("model,preset,devices,prompt,gen", [
    ("micro", "tiny", 2, 8, 4), ("tiny", "u280", 3, 8, 4), ("gpt2-xl", "u280", 4, 16, 3),
])
def test_rings_time_the_same_in_both_loops(model, preset, devices, prompt, gen, monkeypatch):
    # each card pauses the compiled loop at its NET instructions, as the Python generator yields
    hw = load_preset(preset)
    spec = load_model(model) if model in ("micro", "tiny") else get_spec(model)
    programs = compile_devices(spec, hw, prompt_len=prompt, devices=devices)

    def go():
        r = simulate_system(programs, prompt_len=prompt, gen_len=gen)
        return (_everything(r.result), [_everything(c) for c in r.cards],
                [dataclasses.asdict(c) for c in r.collectives])
    native, python = _both(monkeypatch, go)
    assert native == python
    assert native[2]                                 # collectives happened
