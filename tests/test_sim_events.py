"""Event counts for the energy model (StreamTiming.events) and the per-unit decode breakdown
(StreamTiming.waits, unit_breakdown), on hand-checkable programs (u280: MPU 16 lanes x 64,
a 1024-element scratchpad line, 32 HBM channels interleaved by 64 B, 1 KiB pages)."""

import dataclasses

import pytest

from fpgpt.compiler import compile_model
from fpgpt.config import load_preset
from fpgpt.geometry import b_stride, vpu_window_chunks
from fpgpt.isa import Program
from fpgpt.isa.asm import assemble
from fpgpt.models import ModelSpec
from fpgpt.sim.control import Registers
from fpgpt.sim.costs import EVENT_KEYS, link_bytes
from fpgpt.sim.results import CAUSES
from fpgpt.sim.timing import simulate, time_stream

HW = load_preset("u280")


def events(text, hw=HW, regs=None):
    prog = Program({"s": assemble(text + "\nHALT")})
    st = time_stream(prog, "s", hw, Registers(regs or {}))
    assert set(st.events) == set(EVENT_KEYS)
    return st


def nonzero(st):
    return {k: v for k, v in st.events.items() if v}


def test_load_and_store_bytes_and_page_activations():
    # 64 rows x 1024 elements, contiguous: 128 KiB = 4 KiB per channel = 4 pages each.
    st = events("LOAD rows=64, cols=1024, hstride=2048, sstride=1024, batch=1")
    assert nonzero(st) == {"hbm_read_bytes": 131072, "spad_write_bytes": 131072,
                           "hbm_activations": 32 * 4}
    # One row of 256 elements: 512 B, one 64 B burst on 8 channels, one page each.
    st = events("STORE rows=1, cols=256, hstride=512, sstride=256, batch=1")
    assert nonzero(st) == {"hbm_write_bytes": 512, "spad_read_bytes": 512, "hbm_activations": 8}
    assert st.hbm_bytes == 512


def test_mm_macs_at_the_engines_padded_sizes_and_scratchpad_accesses():
    # m=2, K=100 -> 2 chunks of 64, N=20 -> 2 lane groups of 16. A rows not chunk-aligned (lda=100):
    # one 1024-element line read per row.
    fast = events(f"MM dst=0x80000, a=0, b=0x40000, m=2, k=100, n=20, lda=100, "
                  f"ldb={b_stride(100, HW)}, ldc=20, batch=1")
    macs = 2 * 128 * 32
    assert nonzero(fast) == {"mpu_macs": macs, "spad_read_bytes": 2 * (2 * 1024 + macs),
                             "spad_write_bytes": 2 * 2 * 20}
    # The slow B layout feeds only the 20 valid lanes; a bias adds one line read per group and row.
    slow = events("MM dst=0x80000, a=0, b=0x40000, bias=0x60000, m=2, k=100, n=20, lda=100, "
                  "ldb=100, ldc=20, batch=1, has_bias=1")
    macs = 2 * 128 * 20
    assert nonzero(slow) == {"mpu_macs": macs,
                             "spad_read_bytes": 2 * (2 * 1024 + 2 * 2 * 1024 + macs),
                             "spad_write_bytes": 2 * 2 * 20}


def test_vpu_element_ops_per_pass_and_windows():
    w = vpu_window_chunks(HW) * HW.mpu.width          # elements of one operand window
    st = events("VADD dst=0, a=0x1000, b=0x2000, rows=3, cols=100, ldd=100, lda=100, ldb=100\n"
                "SOFTMAX dst=0, a=0x1000, rows=2, cols=50, ldd=50, lda=50\n"
                "ARGMAX rd=r2, a=0, cols=300")
    assert nonzero(st) == {"vpu_ops.VADD": 300, "vpu_ops.SOFTMAX": 2 * 50 * 3,
                           "vpu_ops.ARGMAX": 300,
                           "spad_read_bytes": 2 * (3 * 2 * w + 2 * w + -(-300 // w) * w),
                           "spad_write_bytes": 2 * (300 + 100)}


def test_a_loop_body_counts_once_per_iteration_and_register_shapes_count_their_rows():
    # R1 counts 5, 4, ..., 1: the LOAD moves R1 rows of 256 elements (512 B) each time.
    st = events("SETI rd=r1, imm=5\n"
                "L1:\n"
                "LOAD cols=256, hstride=512, sstride=256, batch=1, rr=r1, wait.dma=1\n"
                "VCOPY dst=0, a=0x1000, rows=1, cols=64, ldd=64, lda=64\n"
                "ADDI rd=r1, rs=r1, imm=-1\n"
                "BNZ rs=r1, target=L1")
    rows = 5 + 4 + 3 + 2 + 1
    assert st.events["hbm_read_bytes"] == rows * 512 == st.hbm_bytes
    assert st.events["spad_write_bytes"] == rows * 512 + 5 * 64 * 2
    assert st.events["vpu_ops.VCOPY"] == 5 * 64
    assert st.counts["LOAD"] == 5


def test_link_bytes_follow_the_ring_algorithm():
    hw4 = dataclasses.replace(HW, devices=4)
    assert link_bytes(hw4, "SEND", {"count": 100}) == 200
    assert link_bytes(hw4, "RECV", {"count": 100}) == 0
    assert link_bytes(hw4, "ALLGATHER", {"count": 100}) == 3 * 200
    assert link_bytes(hw4, "ALLREDUCE", {"count": 100}) == 2 * 3 * 2 * 25
    st = events("SEND sram=0, count=100")
    assert st.events["link_bytes"] == 200 and st.events["spad_read_bytes"] == 200


@pytest.mark.parametrize("preset", ["u280", "tiny"])
def test_physics_of_a_compiled_program(preset):
    """HBM bytes each way add up to hbm_bytes; decode reads at least every weight once per
    token; every MAC reads its B element from the scratchpad; the breakdown adds up."""
    hw = load_preset(preset)
    spec = ModelSpec("toy", n_layer=2, n_head=4, d_model=128, d_ff=512, vocab=300, n_ctx=64)
    prog = compile_model(spec, hw, prompt_len=7, verify=False)
    res = simulate(prog, hw, prompt_len=7, gen_len=5)
    for st in res.streams:
        ev = st.events
        assert ev["hbm_read_bytes"] + ev["hbm_write_bytes"] == st.hbm_bytes
        assert ev["spad_read_bytes"] >= 2 * ev["mpu_macs"] > 0
        assert ev["vpu_ops.ARGMAX"] == spec.vocab * (1 if st.name == "prefill" else 4)
        assert ev["hbm_activations"] >= ev["hbm_read_bytes"] / hw.hbm.page_bytes
        assert ev["link_bytes"] == 0
        bd = st.unit_breakdown
        for u in ("dma", "mpu", "vpu", "net"):
            assert sum(bd[u].values()) == pytest.approx(st.cycles)
            assert set(bd[u]) <= {"busy", "idle"} | {f"wait.{c}" for c in CAUSES}
            assert all(v >= 0 for v in bd[u].values())
        assert 0 <= bd["hbm"]["idle"] <= st.cycles and 0 <= bd["hbm"]["channel_idle"] <= st.cycles
        assert bd["hbm"]["channel_idle"] >= bd["hbm"]["idle"]   # no transfer: no channel busy
    assert res.decode.events["hbm_read_bytes"] >= 4 * spec.weight_bytes_per_token()


def test_waits_are_blamed_on_the_unit_waited_for():
    # The MM waits for the LOAD's data: the MPU's wait before it is the DMA's.
    st = events("LOAD rows=64, cols=1024, hstride=2048, sstride=1024, batch=1\n"
                f"MM dst=0x80000, a=0, b=0x40000, m=1, k=1024, n=64, lda=1024, "
                f"ldb={b_stride(1024, HW)}, ldc=64, batch=1, wait.dma=1")
    w = st.waits["mpu"]
    assert w["dma"] == pytest.approx(st.busy_cycles["dma"] - 1, abs=1)
    assert w.get("dispatch", 0) <= 2
    assert st.unit_breakdown["mpu"]["busy"] == st.busy_cycles["mpu"]
    assert st.unit_breakdown["hbm"]["idle"] == pytest.approx(st.cycles - st.busy_cycles["dma"])


def test_cli_simulate_breakdown_table_and_json():
    import json

    from click.testing import CliRunner

    from fpgpt.cli import main
    args = ["simulate", "--model", "micro", "--hw", "tiny", "--prompt-len", "8", "--gen-len", "4"]
    r = CliRunner().invoke(main, args + ["--breakdown"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "decode: ms per token" in r.output and "waits on" in r.output
    assert "HBM: no transfer in flight" in r.output and "VPU" in r.output
    assert "busy time by instruction" in r.output and "SOFTMAX" in r.output
    r = CliRunner().invoke(main, args + ["--json"], catch_exceptions=False)
    d = json.loads(r.output)
    bd = d["breakdown_cycles"]["decode"]
    assert sum(bd["mpu"].values()) == pytest.approx(d["cycles"]["decode"])
    assert d["events"]["decode"]["mpu_macs"] > 0
    by_op = d["busy_by_instruction_cycles"]["decode"]
    assert set(by_op["vpu"]) >= {"LAYERNORM", "SOFTMAX", "ARGMAX"} and set(by_op["mpu"]) == {"MM"}
    for u in ("dma", "mpu", "vpu"):
        assert sum(by_op[u].values()) == pytest.approx(bd[u]["busy"])
    # a ring: every card's decode breakdown, and its busy time by instruction a column a card
    r = CliRunner().invoke(main, args + ["--breakdown", "--devices", "2"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "card 0, decode: ms per token" in r.output and "card 1, decode" in r.output
    out = " ".join(r.output.split())                 # rich wraps titles to the terminal
    assert "card 0, prefill: ms (% of" in out and "card 1, prefill" in out
    assert "prefill: busy time by instruction, ms, per card" in out
    assert "per card" in r.output and "ALLGATHER" in r.output
    r = CliRunner().invoke(main, args + ["--devices", "2", "--json"], catch_exceptions=False)
    cards = json.loads(r.output)["cards"]
    assert len(cards) == 2
    for c in cards:
        bd, by_op = c["breakdown_cycles"]["decode"], c["busy_by_instruction_cycles"]["decode"]
        assert bd["net"]["busy"] > 0
        assert by_op["net"]["ALLGATHER"] == pytest.approx(bd["net"]["busy"])
        for u in ("dma", "mpu", "vpu"):
            assert sum(by_op[u].values()) == pytest.approx(bd[u]["busy"])
