"""The dispatcher in Amaranth's simulator against fpgpt.sim.timing's dispatch.

Behavioural units take each instruction for exactly the cycles fpgpt.sim.costs gives its
captured fields (so the unit latencies are the timing model's); then every MPU/VPU/NET
instruction must start at the cycle the timing model says (plus the one fetch cycle), and HALT
must complete at the model's stream length. Programs are random: loops (SETI/ADDI/BNZ),
register-dependent shapes, random wait counts, SYNC, and ARGMAX into a register that later
shapes read (the scoreboard).
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import memory
from amaranth.sim import Simulator

from fpgpt.config import load_preset
from fpgpt.hw.dispatch import UNITS, Dispatcher
from fpgpt.hw.decoder import captured_layout
from fpgpt.isa import Instr, Program
from fpgpt.isa.encoding import encode
from fpgpt.isa.table import BY_NAME, BY_OPCODE, Kind
from fpgpt.sim.control import Registers
from fpgpt.sim.costs import mpu_cycles, mpu_issue_cycles, net_cycles, vpu_cycles
from fpgpt.sim.timing import time_stream
from fpgpt.sim.trace import TraceRecorder

FETCH_CYCLES = 1     # start -> FETCH -> first dispatch


class _Starts(TraceRecorder):
    """Records (unit index, stream index, start, end) of every unit instruction."""

    def __init__(self):
        super().__init__()
        self.events = []

    def begin_stream(self, *a, **k):
        pass

    def instr(self, unit, op, index, start, end):
        self.events.append((unit, index, start, end))

    def transfer(self, *a, **k):
        pass


def random_program(rng, iters=3, body=16):
    s = [Instr.make("SETI", rd=1, imm=iters), Instr.make("SETI", rd=2, imm=int(rng.integers(0, 4))),
         Instr.make("SETI", rd=3, imm=int(rng.integers(0, 3)))]
    loop = len(s)

    def waits():
        w = {}
        for u in ("dma", "mpu", "vpu", "net"):
            if u != "dma" and rng.random() < 0.3:
                w[u] = int(rng.integers(1, 4))
        return w

    for _ in range(body):
        r = rng.random()
        if r < 0.25:
            s.append(Instr.make("MM", m=int(rng.integers(1, 4)), k=int(rng.integers(1, 30)),
                                n=int(rng.integers(1, 6)), batch=1, rk=2 * int(rng.random() < .5),
                                rn=3 * int(rng.random() < .5), waits=waits()))
        elif r < 0.45:
            op = rng.choice(["VADD", "GELU", "SOFTMAX", "VCOPY"])
            s.append(Instr.make(op, rows=int(rng.integers(1, 3)), cols=int(rng.integers(1, 30)),
                                rc=4 * int(rng.random() < .5), waits=waits()))
        elif r < 0.55:
            s.append(Instr.make("ARGMAX", rd=4, cols=int(rng.integers(1, 40)), waits=waits()))
        elif r < 0.65:
            s.append(Instr.make("SEND", count=int(rng.integers(0, 200)), waits=waits()))
        elif r < 0.72:
            s.append(Instr.make("NOP", waits=waits()))
        elif r < 0.77:
            s.append(Instr.make("SYNC"))
        elif r < 0.85:
            s.append(Instr.make("ADDI", rd=2, rs=2, imm=1))
        else:
            s.append(Instr.make("ADDI", rd=3, rs=4, imm=int(rng.integers(0, 2))))
    s += [Instr.make("ADDI", rd=1, rs=1, imm=-1), Instr.make("BNZ", rs=1, target=loop),
          Instr.make("HALT")]
    return s


def _fields(raw: int, layout, op_name: str) -> dict[str, int]:
    d = BY_NAME[op_name]
    out = {}
    for f in d.fields:
        fl = layout.members[f.name]
        off = dict((n, x.offset) for n, x in layout)[f.name]
        out[f.name] = (raw >> off) & ((1 << fl.width) - 1) if hasattr(fl, "width") else 0
    return out


def run_rtl(hw, stream, regs0=None):
    """Runs the stream on the dispatcher with behavioural units; returns starts per unit,
    the HALT cycle and the registers at the end."""
    words = [int.from_bytes(encode(i), "little") for i in stream]
    disp = Dispatcher(hw=hw, pc_bits=8)
    top = Module()
    top.submodules.disp = disp
    top.submodules.imem = imem = memory.Memory(shape=512, depth=len(words), init=words)
    rd = imem.read_port()
    top.d.comb += [rd.addr.eq(disp.imem_addr), disp.imem_data.eq(rd.data)]
    starts = {u.value: [] for u in UNITS}
    halt = []
    t0 = 1 + FETCH_CYCLES + len(regs0 or {})    # bench cycle of the model's t = 0

    def unit_bench(u):
        cmd = getattr(disp, f"{u.value}_cmd")
        done = getattr(disp, f"{u.value}_done")
        layout = captured_layout(u)
        op_off = dict((n, x.offset) for n, x in layout)["op"]

        async def bench(ctx):
            # jobs in flight, in order, with their done cycles: the MPU takes its next MM when
            # the previous one's issue ends (mpu_issue_cycles), the others when they complete
            cycle, ready_at, jobs = 0, 0, []
            while True:
                ready = cycle >= ready_at
                ctx.set(cmd.ready, ready)
                if ready and ctx.get(cmd.valid):
                    raw = ctx.get(cmd.payload.as_value())
                    op = BY_OPCODE[(raw >> op_off) & 0xFF].name
                    f = _fields(raw, layout, op)
                    if u.value == "mpu":
                        dur, hold = mpu_cycles(hw, f), mpu_issue_cycles(hw, f)
                    elif u.value == "vpu":
                        dur = hold = vpu_cycles(hw, op, f)
                    else:
                        dur = hold = net_cycles(hw, op, f)
                    starts[u.value].append(cycle - t0)
                    end = cycle + int(dur)
                    if jobs and end <= jobs[-1][0]:
                        end = jobs[-1][0] + 1            # in order (an empty MM)
                    ready_at = cycle + int(hold) if hold < dur else end
                    jobs.append((end, op, f))
                fin = bool(jobs) and cycle == jobs[0][0] - 1
                ctx.set(done, fin)
                if u.value == "vpu":
                    wb = fin and jobs[0][1] == "ARGMAX"
                    ctx.set(disp.wb_we, wb)
                    if wb:
                        ctx.set(disp.wb_addr, jobs[0][2]["rd"])
                        ctx.set(disp.wb_data, 0)     # the timing model's ARGMAX value
                if fin:
                    jobs.pop(0)
                await ctx.tick()
                cycle += 1
        return bench

    async def host(ctx):
        for i, v in (regs0 or {}).items():
            ctx.set(disp.reg_we, 1)
            ctx.set(disp.reg_waddr, i)
            ctx.set(disp.reg_wdata, v)
            await ctx.tick()
        ctx.set(disp.reg_we, 0)
        ctx.set(disp.start, 1)
        await ctx.tick()
        ctx.set(disp.start, 0)
        cycle = 0
        while not ctx.get(disp.halted):
            await ctx.tick()
            cycle += 1
            assert cycle < 100_000, "no HALT"
        halt.append(cycle - FETCH_CYCLES)
        regs = ctx.get(disp.regs)
        halt.append([(regs >> (32 * i)) & 0xFFFFFFFF for i in range(16)])

    sim = Simulator(top)
    sim.add_clock(1e-8)
    for u in UNITS:
        if u.value != "dma":
            sim.add_testbench(unit_bench(u), background=True)
    sim.add_testbench(host)
    # Each unit bench counts cycles from its own first tick; the host spends one tick on start,
    # so instruction 0 dispatches at bench cycle 1 + FETCH_CYCLES.
    sim.run()
    return starts, halt[0], halt[1]


def model(hw, stream, regs0=None):
    rec = _Starts()
    regs = Registers(regs0 or {})
    st = time_stream(Program(streams={"s": stream}), "s", hw, regs, trace=rec)
    names = {1: "mpu", 2: "vpu", 3: "net"}
    starts = {u.value: [] for u in UNITS}
    for unit, index, s, e in rec.events:
        starts[names[unit]].append(int(s))
    return starts, int(st.cycles), regs.v


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_dispatch_matches_timing_model(seed):
    hw = load_preset("tiny")
    rng = np.random.default_rng(seed)
    stream = random_program(rng)
    starts, halt_cycle, regs = run_rtl(hw, stream)
    want_starts, want_cycles, want_regs = model(hw, stream)
    assert sum(len(v) for v in want_starts.values()) >= 12
    for u in ("mpu", "vpu", "net"):
        assert starts[u] == want_starts[u], (u, starts[u][:12], want_starts[u][:12])
    assert halt_cycle == want_cycles
    assert regs == want_regs


def test_dispatcher_checks(quiet_unused):
    hw = load_preset("tiny")
    with pytest.raises(TypeError, match=r"^hw must be a HardwareConfig, not None$"):
        Dispatcher(hw=None)
    with pytest.raises(ValueError, match=r"pc_bits must be an integer in 1..24"):
        Dispatcher(hw=hw, pc_bits=0)
