"""Timing model: durations, dispatch, waits, queues, scoreboard, SYNC, hazards, results."""

import json
from pathlib import Path

import pytest

from fpgpt.config import load_preset
from fpgpt.isa import Instr, Program
from fpgpt.sim.control import Registers, capture, walk
from fpgpt.compiler.buffers import b_stride
from fpgpt.sim.costs import mpu_cycles, mpu_issue_cycles, vpu_cycles
from fpgpt.sim.timing import TimingError, TimingHazard, simulate, time_stream
from fpgpt.sim.trace import TraceRecorder

I = Instr.make
HW = load_preset("u280")
ROOT = Path(__file__).resolve().parents[1]


def load(**kw):
    f = dict(sram=0, hbm=0, rows=1, cols=1024, hstride=2048, sstride=1024, batch=1)
    f.update(kw)
    return I("LOAD", **f)


def mm(m=1, k=1024, n=1024, **kw):
    f = dict(dst=1 << 20, a=0, b=1 << 18, m=m, k=k, n=n, lda=k, ldb=k, ldc=n, batch=1)
    f.update(kw)
    return I("MM", **f)


def vadd(rows=1, cols=1024, **kw):
    f = dict(dst=3 << 20, a=3 << 20, b=3 << 20, rows=rows, cols=cols, ldd=cols, lda=cols, ldb=cols)
    f.update(kw)
    return I("VADD", **f)


def run(instrs, hw=HW, regs=None, **kw):
    """Time one stream; returns (StreamTiming, {index: (start, end)} in cycles)."""
    prog = Program({"s": list(instrs) + [I("HALT")]})
    tr = TraceRecorder()
    st = time_stream(prog, "s", hw, Registers(regs or {}), trace=tr, **kw)
    us = 1.0 / hw.clock_mhz
    spans = {e["args"]["index"]: (e["ts"] / us, (e["ts"] + e["dur"]) / us)
             for e in tr.events if e["ph"] == "X" and e["tid"] < 4}
    return st, spans


# -- durations ---------------------------------------------------------------------------------
def test_mm_duration_scales_with_shape_and_fills_once():
    """The MPU engine's cost: per row of A its line loads and one chunk step per lane group and
    chunk of K (fast B layout; steps padded to the accumulator's D slots when fewer than D
    groups are left), the pipeline once; the slow B layout one lane per cycle."""
    c, lanes = HW.mpu.width, HW.mpu.lanes
    ldb = b_stride(1600, HW)
    f = dict(m=1, k=1600, n=320, batch=1, rk=0, rn=0, has_bias=0, a=0, lda=1600, bsa=0,
             b=0, ldb=ldb, bsb=0)
    fill = HW.mpu.pipeline_cycles
    # 20 groups of 25 chunk steps over the accumulator's D slots (super-groups of D groups,
    # every step but the last D cycles long: padded when fewer than D groups are left)
    d, groups, nk = HW.mpu.acc_latency, 320 // lanes, 1600 // c
    per_row = -(-1600 // (c * lanes)) + 1 + (nk - 1) * d * -(-groups // d) + groups
    assert mpu_cycles(HW, f) == 5 + per_row + fill
    assert mpu_cycles(HW, {**f, "m": 128}) == 5 + 128 * per_row + fill
    assert mpu_cycles(HW, {**f, "batch": 3, "bsa": 1600, "bsb": 320 * ldb}) == \
        5 + 3 * per_row + fill
    slow = mpu_cycles(HW, {**f, "ldb": 1600 + c})
    assert slow > 10 * mpu_cycles(HW, f)


def test_vpu_passes_and_fills():
    """Every row pays its beats (per pass); the element-wise ops pay the op's fill and the VPU's
    return to idle once a row, LAYERNORM and SOFTMAX once a group of rows (and 2 cycles a row
    boundary inside it, and 1 more a summing pass while its rings drain), as the VPU engine
    does (docs/timing.md)."""
    from fpgpt.geometry import vpu_group_rows
    from fpgpt.sim.costs import VPU_ROW_GAP, _vpu_fill
    f = dict(rows=4, cols=1600)
    beats = -(-1600 // HW.vpu.width)
    a, mu, s, rc = (HW.vpu.add_latency, HW.vpu.mul_latency, HW.vpu.special_latency,
                    HW.vpu.recip_stages)
    assert vpu_cycles(HW, "VADD", f) == 4 * (beats + a + 2 + 2) + 1 + 2
    r = HW.vpu.special_ratio                    # GELU's beats in r sub-beats each
    assert vpu_cycles(HW, "GELU", f) == 4 * (r * beats + 5 * mu + 2 * a + s + rc + 2 + 2) + 1
    ln = vpu_cycles(HW, "LAYERNORM", f)
    sm = vpu_cycles(HW, "SOFTMAX", {**f, "rc": 0})
    assert ln > 4 * 3 * beats and sm > 4 * 3 * beats
    per = 3 * beats                             # a beat a cycle in every pass
    drain = 2 * (HW.vpu.acc_latency - 1)        # LAYERNORM sums twice: its rings drain
    g = vpu_group_rows(HW, beats)
    assert g == 16                              # rows of 200 beats (8 lanes) in the u280's 4096
    assert (vpu_cycles(HW, "LAYERNORM", {**f, "rows": g}) - ln
            == (g - 4) * (per + VPU_ROW_GAP["LAYERNORM"] + drain))
    # one row more starts a second group: the fill again
    assert (vpu_cycles(HW, "LAYERNORM", {**f, "rows": g + 1})
            - vpu_cycles(HW, "LAYERNORM", {**f, "rows": g}) == per + _vpu_fill(HW, "LAYERNORM") + 2)
    assert vpu_cycles(HW, "SOFTMAX", {**f, "rc": 64}) > sm


def test_dma_time_grows_with_bytes():
    small, spans_s = run([load(rows=16)])
    big, spans_b = run([load(rows=1024)])
    assert big.cycles > small.cycles
    assert big.hbm_bytes == 1024 * 2048 and small.hbm_bytes == 16 * 2048


# -- dispatch semantics -------------------------------------------------------------------------
def test_waits_serialize_and_independent_units_overlap():
    _, free = run([load(rows=512), mm()])
    _, dep = run([load(rows=512), mm(waits={"dma": 1})])
    assert free[1][0] < free[0][1]          # no wait: MM starts while the LOAD streams
    assert dep[1][0] >= dep[0][1]           # wait.dma=1: MM starts after the LOAD completes
    # An independent VPU op overlaps the MM.
    _, sp = run([mm(m=64), vadd()])
    assert sp[1][0] < sp[0][1]


def test_independent_mms_overlap_the_drain_and_dependent_ones_wait():
    """The MPU takes an independent MM when the previous one's issue ends (its lanes' pipeline
    and writer drain under the next: costs.mpu_issue_cycles, the RTL engine's), a dependent one
    (wait.mpu) only at its completion; the overlap is busy once and HALT waits for the last
    completion (docs/timing.md)."""
    first = mm(n=256, ldb=b_stride(1024, HW))            # the fast B path, as compiled
    second = mm(n=256, ldb=b_stride(1024, HW), dst=(1 << 20) + (1 << 16))
    f = capture(first, Registers())
    cyc, issue = mpu_cycles(HW, f), mpu_issue_cycles(HW, f)
    assert issue == cyc - HW.mpu.pipeline_cycles - 3
    st, sp = run([first, second])
    dep, sp_dep = run([first, second.replace(waits={"mpu": 1})])
    assert sp[1][0] - sp[0][0] == pytest.approx(issue)        # into the drain
    assert sp_dep[1][0] - sp_dep[0][0] == pytest.approx(cyc)  # after the completion
    assert dep.cycles - st.cycles == cyc - issue
    assert st.busy_cycles["mpu"] == 2 * cyc - (cyc - issue) and dep.busy_cycles["mpu"] == 2 * cyc
    assert st.waits.get("mpu", {}) == {}              # never free with nothing started
    # an empty MM completes in order, after the MM whose drain it follows
    empty = mm(n=0, ldb=b_stride(1024, HW), dst=(1 << 20) + (1 << 17))
    st_e, _ = run([first, empty])
    assert st_e.cycles == run([first])[0].cycles + 1


def test_wait_count_picks_the_kth_most_recent():
    prog = [load(rows=64), load(rows=1024, hbm=1 << 24), mm(waits={"dma": 2})]
    _, sp = run(prog)
    assert sp[2][0] >= sp[0][1] and sp[2][0] < sp[1][1]


def test_queue_depth_stalls_dispatch():
    hw = HW.replace(**{"buffers.queue_depth": 2})
    prog = [mm(m=64) for _ in range(4)] + [vadd()]
    _, sp = run(prog, hw)
    _, deep = run(prog)
    # depth 2: MM 2 cannot enter before MM 0 completes, MM 3 before MM 1; the VADD behind them.
    assert sp[4][0] >= sp[1][1]
    assert deep[4][0] < deep[0][1]


def test_register_scoreboard_stalls_readers_of_an_argmax_result():
    argmax = I("ARGMAX", rd=5, a=0, cols=50000)
    prog = [argmax, load(ra=5, hstride=2048), load(hbm=1 << 24)]
    _, sp = run(prog)
    assert sp[1][0] >= sp[0][1]             # reads R5: waits for ARGMAX to complete
    assert sp[2][0] >= sp[0][1]             # in-order dispatch: stuck behind the stalled LOAD
    _, sp2 = run([argmax, load(hbm=1 << 24)])
    assert sp2[1][0] < sp2[0][1]            # no register read: no stall


def test_sync_waits_for_every_unit():
    _, sp = run([mm(m=64), I("SYNC"), vadd()])
    assert sp[2][0] >= sp[0][1]
    _, sp = run([mm(m=64), vadd()])
    assert sp[1][0] < sp[0][1]


def test_halt_waits_for_drain():
    st, sp = run([load(rows=1024)])
    assert st.cycles >= sp[0][1]


def test_dispatch_order_matches_control_walk():
    loop = [I("SETI", rd=3, imm=3), load(ra=1, hstride=2048), I("ADDI", rd=1, rs=1, imm=1),
            mm(rk=1), I("ADDI", rd=3, rs=3, imm=-1), I("BNZ", rs=3, target=1), vadd(), I("HALT")]
    prog = Program({"s": loop})
    expected = [c.index for c in walk(loop, Registers()) if c.unit.value != "ctrl"]
    tr = TraceRecorder()
    regs = Registers()
    st = time_stream(prog, "s", HW, regs, trace=tr)
    # Unit events are recorded in dispatch order.
    got = [e["args"]["index"] for e in tr.events if e["ph"] == "X" and e["tid"] < 4]
    assert got == expected
    assert st.counts["LOAD"] == 3 and st.counts["BNZ"] == 3 and st.instructions == len(
        list(walk(loop, Registers())))
    assert regs[1] == 3 and regs[3] == 0


def test_errors_are_one_line_timing_errors():
    with pytest.raises(TimingError, match="missing HALT"):
        time_stream(Program({"s": [vadd()]}), "s", HW, Registers())
    with pytest.raises(TimingError, match="endless loop"):
        time_stream(Program({"s": [I("BNZ", rs=0, target=0), I("SETI", rd=1, imm=1),
                                   I("BNZ", rs=1, target=1)]}), "s", HW, Registers(), max_steps=100)
    prog = Program({"prefill": [I("HALT")], "decode": [I("HALT")]}, meta={"prompt_len": 8})
    with pytest.raises(TimingError, match="compiled for a 8-token prompt"):
        simulate(prog, HW, prompt_len=4, gen_len=2)
    with pytest.raises(TimingError, match="gen_len must be an integer >= 1"):
        simulate(prog, HW, prompt_len=8, gen_len=0)


# -- physics ------------------------------------------------------------------------------------
def test_streaming_n_bytes_takes_at_least_n_over_peak():
    rows = 8192                                  # 16 MiB in 16 loads of 1 MiB
    prog = [load(rows=512, cols=1024, hbm=i << 20) for i in range(rows // 512)]
    st, _ = run(prog)
    seconds = st.cycles / (HW.clock_mhz * 1e6)
    assert st.hbm_bytes == rows * 2048
    assert seconds >= st.hbm_bytes / HW.hbm_peak_bytes_per_s
    assert st.busy_cycles["dma"] <= st.cycles


# -- hazards ------------------------------------------------------------------------------------
def test_hazard_check_finds_a_missing_wait_and_accepts_a_correct_one():
    bad = [load(rows=64, sram=0), mm(m=1, a=0, k=1024)]                   # MM reads what LOAD writes
    with pytest.raises(TimingHazard, match=r"RAW .*instruction 1 \(MM\).*instruction 0 \(LOAD\).*dma"):
        run(bad, check_hazards=True)
    run([load(rows=64, sram=0), mm(m=1, a=0, k=1024, waits={"dma": 1})], check_hazards=True)
    # WAR: a LOAD overwriting what the MM still reads.
    with pytest.raises(TimingHazard, match="WAR"):
        run([mm(m=64, a=0, k=1024), load(rows=1, sram=0)], check_hazards=True)
    # Different columns of the same rows do not conflict.
    run([load(rows=8, cols=64, sstride=1024, sram=0), load(rows=8, cols=64, sstride=1024, sram=64,
                                                          hbm=1 << 20)], check_hazards=True)


def test_compiled_gpt_program_has_no_hazards_and_sane_results():
    from fpgpt.compiler import compile_model
    from fpgpt.models import ModelSpec
    spec = ModelSpec("toy", n_layer=2, n_head=4, d_model=128, d_ff=512, vocab=300, n_ctx=64)
    prog = compile_model(spec, HW, prompt_len=8)
    res = simulate(prog, HW, prompt_len=8, gen_len=5, check_hazards=True)
    assert res.decode.counts["ARGMAX"] == 4 and res.prefill.counts["ARGMAX"] == 1
    assert res.ttft_ms > 0 and res.ms_per_token > 0
    assert 0 < res.hbm_bw_utilization < HW.hbm.efficiency
    assert set(res.unit_utilization) == {"dma", "mpu", "vpu", "net"}
    assert all(0 <= v <= 1 for v in res.unit_utilization.values())
    assert res.to_json()["cycles"]["total"] == pytest.approx(res.prefill.cycles + res.decode.cycles)
    # Without its waits the same program is caught.
    stripped = Program({k: [Instr(i.op, i.args) for i in v] for k, v in prog.streams.items()},
                       registers=prog.registers, meta=prog.meta)
    with pytest.raises(TimingHazard):
        simulate(stripped, HW, prompt_len=8, gen_len=2, check_hazards=True)


# -- results and trace --------------------------------------------------------------------------
def test_result_json_keys_and_one_token_runs_no_decode():
    prog = Program({"prefill": [load(rows=64), mm(waits={"dma": 1}), I("HALT")],
                    "decode": [I("HALT")]}, meta={"model": "toy"})
    res = simulate(prog, HW, prompt_len=4, gen_len=1)
    assert res.decode is None and res.ms_per_token == 0.0
    js = res.to_json()
    assert set(js) == {"model", "hw", "devices", "clock_mhz", "prompt_len", "gen_len", "ttft_ms",
                       "ms_per_token", "tokens_per_s", "total_ms", "hbm_bytes_per_token",
                       "hbm_bw_utilization", "unit_utilization", "cycles"}
    assert set(js["unit_utilization"]) == {"dma", "mpu", "vpu"}
    assert js["model"] == "toy" and js["hw"] == "u280"
    json.dumps(res.to_dict())
    assert res.breakdown_ms["mpu"]["MM"] > 0


def test_decode_stream_gets_r3_and_persisting_registers():
    # decode: loop R3 times doing one LOAD; prefill leaves R1 = 7 for decode to read.
    prog = Program({"prefill": [I("SETI", rd=1, imm=7), I("HALT")],
                    "decode": [load(ra=1, hstride=2048), I("ADDI", rd=3, rs=3, imm=-1),
                               I("BNZ", rs=3, target=0), I("HALT")]})
    res = simulate(prog, HW, prompt_len=1, gen_len=6)
    assert res.decode.counts["LOAD"] == 5
    assert res.hbm_bytes_per_token == pytest.approx(2048)
    assert res.tokens_per_s == pytest.approx(1e3 / res.ms_per_token)


def test_trace_is_valid_json_with_one_track_per_unit(tmp_path):
    prog = Program({"prefill": [load(rows=64), mm(waits={"dma": 1}), vadd(waits={"mpu": 1}),
                                I("HALT")], "decode": [load(rows=8), I("HALT")]})
    tr = TraceRecorder()
    simulate(prog, HW, prompt_len=1, gen_len=2, trace=tr)
    path = tr.write_trace(tmp_path / "t.json")
    data = json.loads(path.read_text())
    threads = {e["args"]["name"]: e["tid"] for e in data["traceEvents"]
               if e["ph"] == "M" and e["name"] == "thread_name"}
    assert set(threads) == {"dma", "mpu", "vpu", "net", "hbm"}
    assert len(set(threads.values())) == 5
    xs = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert {e["tid"] for e in xs} == {threads["dma"], threads["mpu"], threads["vpu"], threads["hbm"]}
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in xs)
    assert any(e["ph"] == "C" and e["name"] == "hbm GB/s" for e in data["traceEvents"])
    # The decode stream's events come after the prefill's.
    dec = [e for e in xs if e["args"]["stream"] == "decode"]
    pre = [e for e in xs if e["args"]["stream"] == "prefill"]
    assert min(e["ts"] for e in dec) >= max(e["ts"] + e["dur"] for e in pre) - 1e-9
    with pytest.raises(FileExistsError):
        tr.write_trace(path)


def test_trace_max_events_caps_the_file():
    tr = TraceRecorder(max_events=5)
    run_prog = Program({"s": [mm() for _ in range(20)] + [I("HALT")]})
    time_stream(run_prog, "s", HW, Registers(), trace=tr)
    data = tr.to_json()
    assert sum(1 for e in data["traceEvents"] if e["ph"] != "M") == 5
    assert data["otherData"]["dropped_events"] == 15
    with pytest.raises(ValueError, match="max_events"):
        TraceRecorder(max_events=0)
