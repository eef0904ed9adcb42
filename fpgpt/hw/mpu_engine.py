"""The MPU engine: executes captured ``MM`` instructions with ``hw.mpu.lanes`` :class:`MPULane`\\ s
on the wide scratchpad (fpgpt.hw.scratchpad: ``C`` = ``mpu.width`` elements per chunk, ``NB`` =
``mpu.lanes`` banks, ``P = C·NB`` elements per line).

Semantics: the ISA table's ``MM`` (``numerics.mpu_matmul`` exact, bit for bit): for every matrix
``bt``, row ``i`` of A and column ``j`` of C, the dot product of ``S[a + bt*bsa + i*lda : +K]``
and ``S[b + bt*bsb + j*ldb : +K]`` (``K = k + R[rk]``, ``N = n + R[rn]``), plus ``S[bias + j]``
when ``has_bias``, rounded to FP16; ``-inf`` where ``mask`` and ``j > i + R[rn]``.

Schedule, per row ``(bt, i)``:

* *A load*: ``nA`` line reads (line port) of the row into the A-row buffer (``max_k`` elements,
  one memory per chunk slot so that a line lands without a shifter); a chunk of A is then read
  from two buffered chunks through one chunk-wide extractor (any element offset of A).
* *groups*: the output columns ``lanes`` at a time (lane ``l`` computes column ``jx + l``); a
  group streams ``nk = max(1, ceil(K/C))`` chunks. Each lane's accumulator is C-slow over
  ``D = mpu.acc_latency`` slots (:class:`MPULane`): a column's chunk ``kc >= 1`` enters a
  multiple of ``D`` cycles after its chunk ``kc - 1``. So the groups go in *super-groups* of up
  to ``D``: for each chunk step ``kc``, groups ``0..g-1`` take chunk ``kc`` on consecutive
  cycles (the A chunk is reused), and the next step starts ``D`` cycles after this one (bubbles
  when ``g < D``; none after the last step, and no waiting at all when ``nk = 1``). A free
  running phase (cycle mod ``D``) keeps every item at its slot when a request is refused. Two
  B paths:

  - **fast** (``b``, ``bsb`` and ``ldb`` multiples of ``C`` and ``s = ldb/C = 1 (mod NB/2)``,
    odd; any ``s`` with one bank): lane ``l``'s chunk ``kc`` is in bank ``q0 + l·s + kc (mod
    NB)``, distinct for the ``NB`` lanes, so one bank-port read gives every lane its chunk:
    the even lanes' chunks rotated into place by lane 0's bank, the odd lanes' by lane 1's
    (``NB/2`` further on when ``s = 1 + NB/2``): one chunk step of a group per cycle. Until
    session 19 only ``s = 1 (mod NB)`` (one rotation) was fast, so a weight's rows of ``K =
    1,600`` (25 chunks, 9 mod 16) were padded to 2,112 elements in the scratchpad and could not
    be loaded as one run (geometry.weight_stride);
  - **slow** (anything else, ``ldb = 0`` included): one group at a time, one lane-chunk per
    line-port read (two chunks from the line, one extractor), ``nl`` (valid lanes) reads per
    chunk step, lane ``l`` at its own slot (a step but the last takes a multiple of ``D``).

  Results and biases go by *entries* of ``Q`` groups (:func:`fpgpt.geometry.mm_entry_groups`:
  a whole super-group, ``Q = D``, where ``Q·lanes + C - 1 <= P``, as on u280 and tiny; slow
  path: one group). An entry's bias elements come in one line read (fast: in the super-group's
  first chunk step, held in ``D`` register sets until each group's last chunk); the FP16
  results leave the lanes ``MPULane.latency`` cycles after each group's last chunk (one group
  per cycle from a super-group), wait in a register beside the lanes until the entry's last
  group's, and go into a FIFO, and a *writer* stores each entry with one masked line write, on
  the line port's cycles the sequencer does not use. So a decode MM (one row, the DMA
  streaming its next weights into the scratchpad) takes the line port twice per ``Q·lanes``
  columns, not per ``lanes``: the DMA's stripes wait for fewer of its cycles (session 19;
  docs/timing.md, "Port B").

*Overlap*: the engine takes the next MM the cycle after an MM's last chunk has issued; that MM's
last groups leave the lanes and the writer while the next one loads its A row and streams (the
lanes carry ``first``, ``last`` and the bias beside each chunk, so nothing in them belongs to one
MM). Each entry's descriptor marks the MM's last group, whose store pulses ``done`` (a cycle
later, from a register), so MMs complete in order; an empty MM waits in DRAIN for the earlier
MMs' stores. The dispatcher's wait counts keep an MM that reads an earlier one's result from
starting before that one's ``done``.

*Liveness*: the fast path waits only on the bank port (never refused), its bias reads (any
cycle) and the result FIFO, so it always progresses. A slow-path lane reads only at its slot:
a line port that refused every cycle of one phase modulo ``D`` forever (a competitor with a
period dividing ``D``) would stall it; staging each lane's chunk ahead of its slot would remove
that (the compiler emits fast-path MMs only).

:func:`engine_cycles` gives the cycles of one MM, handshake to ``done``, when every line request
is granted; :func:`engine_issue_cycles`, handshake to taking the next MM.
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..geometry import mm_entries, mm_entry_groups, mm_fast_b
from ..isa.table import Unit
from .decoder import captured_layout
from .fpu import delay
from .mpu import MPULane
from .shared import shared
from .scratchpad import (ELEMENT_BITS, bank_count, bank_signature, check_geometry,
                         chunk_bits, chunk_elements, line_elements, line_signature, row_bits)

__all__ = ["MPUEngine", "F16_NEG_INF", "DEFAULT_MAX_K", "fast_b_layout", "engine_cycles",
           "engine_issue_cycles"]

#: FP16 bit pattern of -inf (the causal mask's value).
F16_NEG_INF = 0xFC00
#: Default A-row buffer length: GPT-2 XL's largest reduction is 4·1600 = 6400, split by the
#: compiler into tiles; the u280 tiles reduce over at most 4096.
DEFAULT_MAX_K = 8192
_W = 34                  # loop bounds: 16-bit fields plus 32-bit registers
_A = 32                  # scratchpad address arithmetic (the ISA's addresses are 32 bits)

# Constant cycles of engine_cycles (measured on the RTL, asserted by the cocotb bench).
_START = 2               # handshake edge to the first A request (IDLE -> CHECK -> LOADA)
_ROW = 1                 # the cycle after the A load (the last line lands in the buffer)
_TAIL = 3                # last chunk's issue to done, beyond the lane latency
_EMPTY = 3               # batch, m or N zero


def _lane_latency(hw: HardwareConfig) -> int:
    # MPULane.latency without elaborating one: chunk latency + accumulator ring + bias add +
    # rounding (MPUConfig.pipeline_cycles).
    return hw.mpu.pipeline_cycles


#: Whether an MM's B takes the fast path (the rule lives in fpgpt.geometry).
fast_b_layout = mm_fast_b


def _a_lines(hw: HardwareConfig, f: dict[str, int], k: int) -> int:
    """Line reads of one A row: enough for any row offset unless A is chunk-aligned."""
    c, p = chunk_elements(hw), line_elements(hw)
    if k == 0:
        return 0
    aligned = f["a"] % c == 0 and f["lda"] % c == 0 and (f["batch"] <= 1 or f["bsa"] % c == 0)
    return -(-(k + (0 if aligned else c - 1)) // p)


def engine_cycles(hw: HardwareConfig, f: dict[str, int]) -> int:
    """Cycles of one MM on :class:`MPUEngine`, from the command handshake to ``done``, when the
    scratchpad grants every line request.

    ``f``: captured fields with ``rk``/``rn`` holding the register values (as
    :func:`fpgpt.sim.control.capture` gives them). With ``K = k + rk``, ``N = n + rn``,
    ``nk = max(1, ceil(K/C))``, ``G = ceil(N/lanes)``, ``nA`` = :func:`_a_lines`, ``hb`` =
    ``has_bias``, ``L`` = the lane latency, ``D`` = ``mpu.acc_latency`` (the accumulator's
    slots), ``nl_g`` the valid lanes of group ``g``::

        rows  = batch · m
        fast, nk = 1:  2 + rows·(max(nA,1) + 1 + G + hb·E) + L + 3
        fast, nk > 1:  2 + rows·(max(nA,1) + 1 + (nk-1)·D·ceil(G/D) + G) + L + 3
        slow:  2 + rows·(max(nA,1) + 1 + sum_g (hb + 1 + nl_g + (nk-1)·D·ceil(nl_g/D))) + L + 2
        empty (rows or N zero): 3

    (fast, nk > 1: super-groups of up to ``D`` groups, each chunk step but the last padded to
    ``D`` cycles; ``E`` = :func:`fpgpt.geometry.mm_entries`, the bias line reads of a row, one per
    ``Q`` groups of a super-group; slow: a group's chunk steps but the last rounded up to a
    multiple of ``D``.)
    """
    nb, c = bank_count(hw), chunk_elements(hw)
    d = hw.mpu.acc_latency
    k, n = f["k"] + f["rk"], f["n"] + f["rn"]
    rows = f["batch"] * f["m"]
    if rows == 0 or n == 0:
        return _EMPTY
    nk = max(1, -(-k // c))
    groups = -(-n // nb)
    hb = 1 if f["has_bias"] else 0
    load = max(_a_lines(hw, f, k), 1) + _ROW
    if fast_b_layout(hw, f):
        if nk == 1:
            per_row = load + groups + hb * mm_entries(hw, groups)
        else:
            per_row = load + (nk - 1) * d * -(-groups // d) + groups
        last = 0
    else:   # the last group's writer cycle overlaps the lanes' latency
        nl_last = n - (groups - 1) * nb
        steps = ((groups - 1) * -(-nb // d) + -(-nl_last // d)) * (nk - 1) * d
        per_row, last = load + groups * (hb + 1) + n + steps, -1
    return _START + rows * per_row + last + _lane_latency(hw) + _TAIL


def engine_issue_cycles(hw: HardwareConfig, f: dict[str, int]) -> int:
    """Cycles of one MM on :class:`MPUEngine` from its command handshake to the first cycle the
    engine takes the next command (back in IDLE after its last group's last chunk issued): its
    last groups then leave the lanes and the writer stores them while the next MM runs, and its
    ``done`` pulses :func:`engine_cycles` after its handshake (when the writer is not kept off
    the line port by the next MM's reads).

    Counted as the timing model counts: an MM that starts at ``s`` completes (its ``done``
    counted by the dispatcher) at ``s + engine_cycles`` and the next starts at ``s + this``.
    ``engine_cycles - L - 3`` on the fast path (IDLE the cycle after the last issue; ``done``
    ``L + 2`` cycles after that), ``engine_cycles - L - 2`` on the slow path (a YIELD cycle
    before IDLE; the last group's write overlaps the lanes' latency), ``engine_cycles`` for an
    empty MM when the engine has nothing in flight (it completes, in order, after the earlier
    MMs' writes, then returns to IDLE). Measured on the RTL (tests/rtl/cocotb_mpu_engine.py).
    """
    e = engine_cycles(hw, f)
    if f["batch"] * f["m"] == 0 or f["n"] + f["rn"] == 0:
        return e
    return e - _lane_latency(hw) - (3 if fast_b_layout(hw, f) else 2)


class MPUEngine(wiring.Component):
    """Executes captured MM instructions on ``hw.mpu.lanes`` lanes (module docstring).

    Parameters
    ----------
    hw : HardwareConfig
        ``mpu.lanes``, ``mpu.width``, the lane latencies and the scratchpad geometry.
    max_k : int
        Longest reduction (``k + R[rk]``) the A-row buffer holds; longer MMs compute garbage
        (the compiler tiles K to at most this).

    Ports
    -----
    cmd : In(stream.Signature(captured_layout(Unit.MPU)))
        The next MM; taken when the engine is idle (its previous MM may still be draining).
    done : Out(1)
        One-cycle pulse when an MM has completed (every result is in the scratchpad), in order.
    busy : Out(1)
        An MM issuing, or results not yet stored.
    line : Out(scratchpad.line_signature(hw))
        A rows, bias, slow-path B reads and the C writes.
    bank : Out(scratchpad.bank_signature(hw))
        Fast-path B reads.
    """

    def __init__(self, *, hw: HardwareConfig, max_k: int = DEFAULT_MAX_K):
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        if not isinstance(max_k, int) or isinstance(max_k, bool) or max_k < 1:
            raise ValueError(f"max_k must be a positive integer, not {max_k!r}")
        check_geometry(hw)
        c = chunk_elements(hw)
        if c & (c - 1):
            raise ValueError(f"mpu.width = {c} is not a power of two: a chunk's element offset "
                             f"is the address's low bits; use {1 << (c.bit_length() - 1)}")
        self._hw = hw
        self.max_k = max_k
        super().__init__({
            "cmd": In(stream.Signature(captured_layout(Unit.MPU))),
            "done": Out(1), "busy": Out(1),
            "line": Out(line_signature(hw)),
            "bank": Out(bank_signature(hw)),
        })

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        L = hw.mpu.lanes
        C, NB, P = chunk_elements(hw), bank_count(hw), line_elements(hw)
        lc, lnb = C.bit_length() - 1, NB.bit_length() - 1
        CB, RB, QB = C * ELEMENT_BITS, row_bits(hw), chunk_bits(hw)
        lanes = [shared(MPULane, hw=hw) for _ in range(L)]
        D = lanes[0].slots                          # dot products in flight per lane
        Q = mm_entry_groups(hw)                     # groups per result write and bias read
        for l, lane in enumerate(lanes):
            m.submodules[f"lane{l}"] = lane
        lat = lanes[0].latency
        # groups in flight (never binds when granted); at least 128, the size whose FIFO level
        # logic the Fmax walk timed (docs/rtl-clock.md, "Latencies for the claimed clock": at 64
        # the descriptor FIFO's level, behind the sequencer's push, mapped 12 LUT deep on tiny)
        depth = 1 << max(7, (lat + 16).bit_length())
        da = -(-(self.max_k + C - 1) // P)          # A-buffer lines

        def lo(x, bits):                            # low bits of x (0-wide safe)
            return x[:bits] if bits else Const(0, 1)

        # ---- the captured instruction ------------------------------------------------------
        ins = Signal(captured_layout(Unit.MPU))
        K, N = Signal(_W), Signal(_W)
        fast = Signal()
        n_a = Signal(range(da + 2))                 # A line reads per row
        nk = Signal(_W)                             # chunk steps per group (>= 1)

        # ---- loop state ----------------------------------------------------------------------
        bt, i, j0 = Signal(16), Signal(16), Signal(_W)   # j0: the super-group's first column
        kc, c_off = Signal(_W), Signal(_W)
        jx = Signal(_W)                             # first column of the group issued now
        # jx + L >= N (the group issued now is its row's last) as a register, set with jx (an
        # add and compare in front of the issue decision's group end, the u280 engine's
        # critical path at 211.9 MHz once the A slot was registered, docs/rtl-clock.md
        # "Session 24")
        jx_end = Signal()
        gx = Signal(range(D))                       # fast path: group within the super-group
        gx_off = Signal(_A)                         # fast path: gx * lanes * ldb
        boff = Signal(_A)                           # c_off + gx_off
        # An entry that is a whole super-group (Q = D: u280, tiny) needs no bookkeeping of its
        # own: one bias read per super-group (a flag), its columns from j0 (the flag and j0
        # keep the issue decision at the 11 LUT levels of the MPU engine's 205 MHz; counting
        # groups read, bx <= gx, took it to 12, 189.5 MHz on u280).
        whole = Q >= D
        if whole:
            bx = Signal()                           # the super-group's bias line is read
            bias_col = je = j0
        else:
            bx = Signal(range(D + Q + 1))           # first group whose bias is not read yet
            bias_col = Signal(_W)                   # first column of group bx
            je = Signal(_W)                         # first column of the result entry's group
        col_regs = [j0, jx] + ([] if whole else [je, bias_col])
        a_bt, b_bt, d_bt = Signal(_A), Signal(_A), Signal(_A)
        a_row, d_row = Signal(_A), Signal(_A)
        lane_off = [Signal(_A, name=f"lane_off{l}") for l in range(L)]   # l * ldb
        b_lane = [Signal(_A, name=f"b_lane{l}") for l in range(L)]       # lane l's B row
        t = Signal(range(da + 2))                   # A line counter
        ls = Signal(range(L))                       # slow path: lane of the next read
        inflight = Signal(range(depth + 1))

        nl = Signal(range(L + 1))                   # valid lanes of this group
        rem_n = (N - jx)[:_W]
        m.d.comb += nl.eq(Mux(rem_n >= L, L, rem_n))
        # kc == 0 and kc + 1 >= nk (chunk kc is the last), flags set with kc (kc + 2 >= nk as it
        # steps, nk <= 1 as it restarts): the compares were the head of the issue decision, 11
        # LUT into the sequencer's registers on u280 (docs/rtl-clock.md "Session 21")
        kc_first, kc_last, nk_one = Signal(), Signal(), Signal()
        is_last = kc_last
        ke = Signal(range(C + 1))                   # elements of K in chunk kc
        rem_k = (K - c_off)[:_W]
        m.d.comb += ke.eq(Mux(K > c_off, Mux(rem_k >= C, C, rem_k), 0))
        addr = [Signal(_A, name=f"addr{l}") for l in range(L)]            # lane l's chunk kc
        for l in range(L):
            m.d.comb += addr[l].eq(b_lane[l] + boff)

        # ---- the accumulator's slots (MPULane): a free-running phase, cycle mod D ---------
        # A dot product's chunks after its first enter its lane a multiple of D cycles apart:
        # each item (fast: a group, slow: a lane) issues its chunks at the phase `slot`, items
        # of a super-group (slow: of a group) at consecutive phases from `base`, the phase of
        # the first item's first chunk. With one chunk step (nk = 1) nothing waits.
        ph, base, slot = Signal(range(D)), Signal(range(D)), Signal(range(D))

        def inc(v):
            return Mux(v == D - 1, 0, v + 1)[:max(1, (D - 1).bit_length())] if D > 1 else v
        m.d.sync += ph.eq(inc(ph))
        multi = nk > 1

        # ---- line port: sequencer requests (priority) and the writer ----------------------
        s_re = Signal()
        s_chunk = Signal(QB)
        w_req = Signal()
        w_chunk, w_data, w_mask = Signal(QB), Signal(ELEMENT_BITS * P), Signal(P)
        m.d.comb += [
            self.line.re.eq(s_re), self.line.we.eq(w_req & ~s_re),
            self.line.chunk.eq(Mux(s_re, s_chunk, w_chunk)),
            self.line.wdata.eq(w_data), self.line.wmask.eq(w_mask),
        ]
        s_granted = s_re & self.line.grant
        w_granted = w_req & ~s_re & self.line.grant
        # what last cycle's granted read was (its data are on rdata now)
        rd_a, rd_bias = Signal(), Signal()
        rd_t = Signal.like(t)
        rd_off = Signal(range(C))                   # element offset of the wanted data
        rd_bx = None if whole else Signal(range(D + Q + 1))   # the first group a read is for
        m.d.sync += [rd_a.eq(0), rd_bias.eq(0)]

        # ---- A-row buffer: one memory per chunk slot of a line ------------------------------
        a_mem_out = []
        a_rd_kc = Signal(_W)                        # chunk of A the slot reads fetch
        for s in range(NB):
            mem = Memory(shape=CB, depth=da, init=[])
            m.submodules[f"a_slot{s}"] = mem
            wp, rp = mem.write_port(), mem.read_port()
            m.d.comb += [wp.addr.eq(rd_t), wp.data.eq(self.line.rdata[s * CB:(s + 1) * CB]),
                         wp.en.eq(rd_a),
                         rp.addr.eq((a_rd_kc >> lnb) + (lo(a_rd_kc, lnb) > s if s < NB - 1 else 0))]
            a_mem_out.append(rp.data)
        m.d.comb += a_rd_kc.eq(kc)

        # ---- the fed stage: what the lanes take this cycle ----------------------------------
        f_mask = Signal(L)                           # lanes taking a chunk
        f_first, f_last, f_final, f_slow = Signal(), Signal(), Signal(), Signal()
        f_ke = Signal.like(ke)
        # the banks of lanes 0 and 1 (fast): lane l's is f_rot[l % 2] + l - l % 2 (mod NB)
        f_rot = [Signal(max(1, lnb), name=f"f_rot{p}") for p in range(2)]
        f_kcs = Signal(max(1, lnb))                  # kc mod NB (A slot of chunk kc)
        f_kcs1 = Signal(max(1, lnb))                 # (kc + 1) mod NB, registered beside it
        f_oa = Signal(range(C))                      # A row's element offset
        f_gx = Signal(range(D))                      # the group's bias registers
        f_place = Signal(range(Q))                   # the group's place in its result entry
        f_e_end = Signal()                           # the group ends its result entry
        m.d.sync += [f_mask.eq(0), f_final.eq(0)]

        # Every wide intermediate below is a named Signal: Amaranth re-emits an unnamed
        # expression at each use, and its combinational-cycle check walks every input bit of a
        # variable part-select per output bit (a 16,384-bit rotation written as one bit_select
        # took minutes per use on u280).
        tail = Signal(CB)                            # zero the elements past K (+0 products)
        m.d.comb += tail.eq(Cat(*[Mux(f_ke > e, Const((1 << ELEMENT_BITS) - 1, ELEMENT_BITS), 0)
                                  for e in range(C)]))

        def extract(lo_c, hi_c, off, name):
            """C elements from element ``off`` of two consecutive chunks."""
            out = Signal(CB, name=name)
            m.d.comb += out.eq(Cat(lo_c, hi_c).bit_select(off * ELEMENT_BITS, CB))
            return out

        def pick(chunks, sel):
            out = Signal(CB)
            with m.Switch(sel):
                for x in range(len(chunks)):
                    with m.Case(x):
                        m.d.comb += out.eq(chunks[x])
            return out

        a_lo = pick(a_mem_out, f_kcs)
        # (f_kcs + 1 in front of the pick and the extract's shifter was the u280 engine's
        # critical path at 213.0 MHz, docs/rtl-clock.md "Session 24")
        a_hi = pick(a_mem_out, f_kcs1)
        a_chunk = Signal(CB)
        m.d.comb += a_chunk.eq(extract(a_lo, a_hi, f_oa, "a_ext") & tail)
        # B: fast, the banks' chunks rotated by f_rot; slow, one extracted chunk in every slot.
        b_ext = extract(self.line.rdata[:CB], self.line.rdata[CB:2 * CB] if NB > 1 else
                        self.line.rdata[:CB], rd_off, "b_ext")
        # (the slow path's chunk goes to every lane as it is, after the fast path's rotation:
        # through it, the extract's shifter and the rotation were 12 LUT levels in front of the
        # lanes, the engine's critical path on u280, docs/rtl-clock.md)
        b_slow = Signal(CB, name="b_slow")
        m.d.comb += b_slow.eq(b_ext & tail)
        rot_in = [Signal(CB, name=f"rot_in{x}") for x in range(NB)]
        for x in range(NB):
            m.d.comb += rot_in[x].eq(self.bank.rdata[x * CB:(x + 1) * CB] & tail)
        # lane l's chunk is rot_in[(l - l % 2 + f_rot[l % 2]) mod NB]: one case per rotation (a
        # one-hot selection per lane), not a part-select of the doubled line. Two rotations, one
        # for the even lanes and one for the odd: with ldb/C = s = 1 + NB/2 (mod NB) the odd
        # lanes sit NB/2 banks further on. (A select of its own per lane, any odd s, took the
        # u280 engine from 126 k to 229 k LUT: a rotation shared by lanes maps far smaller.)
        rot = [Signal(CB, name=f"rot{l}") for l in range(L)]
        for l in range(L):
            with m.If(f_slow):
                m.d.comb += rot[l].eq(b_slow)
            with m.Else():
                if NB > 1:
                    with m.Switch(f_rot[l % 2]):
                        for r in range(NB):
                            with m.Case(r):
                                m.d.comb += rot[l].eq(rot_in[(l - l % 2 + r) % NB])
                else:
                    m.d.comb += rot[l].eq(rot_in[l])

        # one bias line per Q groups of a super-group (all D of it on u280 and tiny): their
        # Q·L consecutive elements from the line's element rd_off (geometry.mm_entry_groups:
        # they fit the line), held from the super-group's first chunk step to each group's last
        bias_reg = [[Signal(ELEMENT_BITS, name=f"bias{g}_{l}") for l in range(L)]
                    for g in range(D)]
        def take_biases(g0):
            for g in range(g0, min(D, g0 + Q)):
                for l in range(L):
                    m.d.sync += bias_reg[g][l].eq(self.line.rdata.bit_select(
                        (rd_off + (g - g0) * L + l) * ELEMENT_BITS, ELEMENT_BITS))
        with m.If(rd_bias):
            if whole:
                take_biases(0)
            else:
                with m.Switch(rd_bx):
                    for g0 in range(0, D, Q):
                        with m.Case(g0):
                            take_biases(g0)
        lane_bias = [Signal(ELEMENT_BITS, name=f"lane_bias{l}") for l in range(L)]
        with m.Switch(f_gx):
            for g in range(D):
                with m.Case(g):
                    m.d.comb += [lane_bias[l].eq(bias_reg[g][l]) for l in range(L)]
        for l, lane in enumerate(lanes):
            m.d.comb += [lane.a.eq(a_chunk), lane.b.eq(rot[l]),
                         lane.bias.eq(lane_bias[l]), lane.has_bias.eq(ins.has_bias),
                         lane.valid.eq(f_mask[l]), lane.first.eq(f_first),
                         lane.last.eq(f_last)]

        # ---- results: descriptor FIFO (at an entry's last issue) + data FIFO -----------------
        # One entry per Q groups of a super-group (slow path: per group), its Q·L columns from
        # je on, written with one masked line write. A group's place in its entry, and whether
        # it ends the entry, from gx (a super-group ends its last entry early: grp_end).
        place, e_end = Signal(range(Q)), Signal()
        with m.Switch(gx):
            for g in range(D):
                with m.Case(g):
                    m.d.comb += [place.eq(g % Q), e_end.eq(g % Q == Q - 1)]
        SG = Q * L
        desc_w = _A + 2 * SG + 1
        m.submodules.desc_q = desc_q = fifo.SyncFIFO(width=desc_w, depth=depth)
        m.submodules.res_q = res_q = fifo.SyncFIFO(width=ELEMENT_BITS * SG, depth=depth)
        # the entry's valid columns: those of its groups (place + 1 of them when it is pushed;
        # slow: one) left in the row, compared with constants on the count saturated
        sg_bits = SG.bit_length()
        rem_sg, left = Signal(sg_bits), (N - je)[:_W]
        cap = Signal(sg_bits)
        if whole:       # the super-group ends at D groups or at N
            m.d.comb += cap.eq(Mux(fast, SG, L))
        else:
            with m.Switch(Mux(fast, place, 0)):
                for q in range(Q):
                    with m.Case(q):
                        m.d.comb += cap.eq((q + 1) * L)
        m.d.comb += rem_sg.eq(Mux(left >= cap, cap, left))
        valid_mask = Cat(*[rem_sg > x for x in range(SG)])
        # the mask's -inf columns: column je + x past the row's limit i + R[rn] (x > lim - je)
        lim = (i + ins.rn)[:_W + 1]
        over = Signal(sg_bits + 1)                  # min(SG, lim - je + 1), 0 when lim < je
        gap = (lim - je)[:_W + 1]
        m.d.comb += over.eq(Mux(lim < je, 0, Mux(gap >= SG, SG, gap + 1)))
        neg_mask = Cat(*[ins.mask & (over <= x) for x in range(SG)])
        push_desc = Signal()
        # the group is the MM's last: its write completes the MM (the writer pulses ``done``)
        mm_end = jx_end & (i + 1 >= ins.m) & (bt + 1 >= ins.batch)
        # The descriptor enters the FIFO a cycle after the group's last issue, from registers:
        # the issue decision (the chunk's bookkeeping, ``room``, the line grant) then ends at
        # these registers instead of running on into the FIFO's level (12 LUT on u280, the
        # engine's critical path, docs/rtl-clock.md). The writer needs the group's results too,
        # ``lat`` cycles later, so no cycle moves; ``inflight`` counts the push when it is
        # decided, so ``room`` still covers the one in this register.
        push_r = Signal(name="push_r")
        desc_r = Signal(desc_w, name="desc_r")
        m.d.sync += [push_r.eq(push_desc),
                     desc_r.eq(Cat((d_row + je)[:_A], valid_mask, neg_mask, mm_end))]
        m.d.comb += [desc_q.w_data.eq(desc_r), desc_q.w_en.eq(push_r)]
        # A group's results leave the lanes ``lat`` cycles after its last chunk; each goes to
        # its place in its entry, which enters the FIFO with its last group's.
        y_push = delay(m, f_final, lat, "y_push")
        y_end = delay(m, f_e_end, lat, "y_end")
        y_g = delay(m, f_place, lat, "y_g")
        y_hold = [Signal(ELEMENT_BITS, name=f"y_hold{l}") for l in range(L)]
        y_now = Signal(ELEMENT_BITS * L, name="y_now")
        for l, lane in enumerate(lanes):
            with m.If(lane.y_valid):
                m.d.sync += y_hold[l].eq(lane.y)
        m.d.comb += y_now.eq(Cat(*[Mux(lane.y_valid, lane.y, y_hold[l])
                                   for l, lane in enumerate(lanes)]))
        sg_hold = [Signal(ELEMENT_BITS * L, name=f"sg_hold{q}") for q in range(Q - 1)]
        with m.If(y_push):
            with m.Switch(y_g):
                for q in range(Q - 1):
                    with m.Case(q):
                        m.d.sync += sg_hold[q].eq(y_now)
        m.d.comb += [res_q.w_data.eq(Cat(*[Mux(y_g == q, y_now, sg_hold[q]) for q in range(Q - 1)],
                                         y_now)),
                     res_q.w_en.eq(y_push & y_end)]

        # ---- writer: one masked line write per entry -----------------------------------------
        h_base = desc_q.r_data[:_A]
        h_valid = desc_q.r_data[_A:_A + SG]
        h_neg = desc_q.r_data[_A + SG:_A + 2 * SG]
        h_end = desc_q.r_data[_A + 2 * SG]
        vals = Cat(*[Mux(h_neg[x], F16_NEG_INF,
                         res_q.r_data[x * ELEMENT_BITS:(x + 1) * ELEMENT_BITS])
                     for x in range(SG)])
        e_w = lo(h_base, lc)
        m.d.comb += [w_req.eq(desc_q.r_rdy & res_q.r_rdy),
                     w_chunk.eq(h_base[lc:]),
                     w_data.eq(vals << (e_w * ELEMENT_BITS)),
                     w_mask.eq(h_valid << e_w),
                     desc_q.r_en.eq(w_granted), res_q.r_en.eq(w_granted)]
        m.d.sync += inflight.eq(inflight + push_desc - w_granted)
        room = inflight < depth
        # An MM completes the cycle after its last group's write (a register: the pulse leaves
        # the engine at a flip-flop); the sequencer may be running the next MM by then.
        w_done = Signal()
        m.d.sync += w_done.eq(w_granted & h_end)

        # ---- sequencer ----------------------------------------------------------------------
        m.d.comb += [self.cmd.ready.eq(0), self.busy.eq(1), self.done.eq(w_done)]

        def next_group():
            """Assignments after a super-group's (slow: a group's) last chunk, and the next
            state."""
            nj = jx + L
            with m.If(~jx_end):                             # next group of the same row
                m.d.sync += [c.eq(nj) for c in col_regs]
                m.d.sync += jx_end.eq(jx + 2 * L >= N)
                m.d.sync += [b_lane[l].eq(b_lane[l] + gx_off + (ins.ldb << lnb))
                             for l in range(L)]
                m.next = "STREAM"
            with m.Elif(i + 1 < ins.m):                     # next row
                m.d.sync += [c.eq(0) for c in col_regs]
                m.d.sync += jx_end.eq(L >= N)
                m.d.sync += [i.eq(i + 1),
                             a_row.eq(a_row + ins.lda), d_row.eq(d_row + ins.ldc), t.eq(0)]
                m.d.sync += [b_lane[l].eq(b_bt + lane_off[l]) for l in range(L)]
                m.next = "LOADA"
            with m.Elif(bt + 1 < ins.batch):                # next matrix
                nb_a, nb_b, nb_d = a_bt + ins.bsa, b_bt + ins.bsb, d_bt + ins.bsc
                m.d.sync += [c.eq(0) for c in col_regs]
                m.d.sync += jx_end.eq(L >= N)
                m.d.sync += [i.eq(0), bt.eq(bt + 1),
                             a_bt.eq(nb_a), b_bt.eq(nb_b), d_bt.eq(nb_d), a_row.eq(nb_a),
                             d_row.eq(nb_d), t.eq(0)]
                m.d.sync += [b_lane[l].eq(nb_b + lane_off[l]) for l in range(L)]
                m.next = "LOADA"
            with m.Else():                                  # the MM's last group issued:
                m.next = "IDLE"                             # the next MM may start now
            m.d.sync += [kc.eq(0), c_off.eq(0), boff.eq(0), gx_off.eq(0), gx.eq(0), ls.eq(0),
                         bx.eq(0), kc_first.eq(1), kc_last.eq(nk_one)]

        def issue_slot(first_item, step_end):
            """Slot bookkeeping when an item issues a chunk."""
            now = Mux(first_item, ph, slot)
            base_n = Mux(first_item, ph, base)
            m.d.sync += [base.eq(base_n), slot.eq(Mux(step_end, base_n, inc(now)))]

        def feed(mask, final, slow, e_last):
            m.d.sync += [f_mask.eq(mask), f_first.eq(kc_first), f_last.eq(is_last),
                         f_final.eq(final), f_slow.eq(slow), f_ke.eq(ke),
                         f_kcs.eq(lo(kc, lnb)), f_kcs1.eq(lo(kc + 1, lnb)),
                         f_oa.eq(lo(a_row, lc)),
                         f_gx.eq(Mux(slow, 0, gx)), f_place.eq(Mux(slow, 0, place)),
                         f_e_end.eq(e_last)]

        with m.FSM(name="mpu"):
            with m.State("IDLE"):
                m.d.comb += [self.cmd.ready.eq(1), self.busy.eq(inflight != 0)]
                with m.If(self.cmd.valid):
                    pl = self.cmd.payload
                    m.d.sync += [ins.eq(pl), K.eq(pl.k + pl.rk), N.eq(pl.n + pl.rn),
                                 bt.eq(0), i.eq(0), j0.eq(0), jx.eq(0), kc.eq(0), c_off.eq(0),
                                 kc_first.eq(1),
                                 boff.eq(0), gx_off.eq(0), gx.eq(0), t.eq(0), ls.eq(0),
                                 bx.eq(0), *[c.eq(0) for c in col_regs],
                                 a_bt.eq(pl.a), b_bt.eq(pl.b), d_bt.eq(pl.dst),
                                 a_row.eq(pl.a), d_row.eq(pl.dst)]
                    m.d.sync += [lane_off[l].eq(pl.ldb * l) for l in range(L)]
                    m.d.sync += [b_lane[l].eq(pl.b + pl.ldb * l) for l in range(L)]
                    m.next = "CHECK"
            with m.State("CHECK"):   # an empty MM (batch, m or N zero) completes at once
                s = ins.ldb[lc:]
                m.d.sync += [
                    fast.eq((lo(ins.b, lc) == 0) & (lo(ins.ldb, lc) == 0) & (s != 0)
                            & (lo(s, lnb - 1) == 1 if lnb > 1 else s[0] if lnb else 1)
                            & ((ins.batch <= 1) | (lo(ins.bsb, lc) == 0))),
                    nk.eq(Mux(K == 0, 1, (K + C - 1) >> lc)),
                    nk_one.eq(K <= C), kc_last.eq(K <= C), jx_end.eq(L >= N),
                ]
                al = (lo(ins.a, lc) == 0) & (lo(ins.lda, lc) == 0) & (
                    (ins.batch <= 1) | (lo(ins.bsa, lc) == 0))
                m.d.sync += n_a.eq(Mux(K == 0, 0, (K + Mux(al, 0, C - 1) + P - 1) >> (lc + lnb)))
                with m.If((ins.batch == 0) | (ins.m == 0) | (N == 0)):
                    m.next = "DRAIN"
                with m.Else():
                    m.next = "LOADA"
            with m.State("LOADA"):   # line t of the A row
                m.d.comb += [s_re.eq(t < n_a),
                             s_chunk.eq((a_row >> lc) + (t << lnb))]
                with m.If(s_granted):
                    m.d.sync += [t.eq(t + 1), rd_a.eq(1), rd_t.eq(t)]
                with m.If((t >= n_a) | (s_granted & (t + 1 >= n_a))):
                    m.next = "AWAIT"
            with m.State("AWAIT"):   # the last line lands in the buffer
                m.next = "STREAM"
            with m.State("STREAM"):
                bias_at = (ins.bias + bias_col)[:_A]
                bias_chunk = (bias_at >> lc)[:QB]
                with m.If(fast):
                    # Groups gx = 0.. of a super-group (at most D) take chunk kc on consecutive
                    # cycles (A's chunk is reused), then chunk kc + 1 a multiple of D cycles
                    # later. A bias line (Q groups' biases) rides on the line port while the
                    # banks stream B (in the first chunk step; before its only one when nk = 1).
                    want_bias = ins.has_bias & (~bx if whole else bx <= gx)
                    m.d.comb += [s_re.eq(want_bias), s_chunk.eq(bias_chunk)]
                    with m.If(s_granted):
                        m.d.sync += [rd_bias.eq(1), rd_off.eq(lo(bias_at, lc))]
                        if whole:
                            m.d.sync += bx.eq(1)
                        else:
                            m.d.sync += [bx.eq(bx + Q), bias_col.eq(bias_col + Q * L),
                                         rd_bx.eq(bx)]
                    first_item = kc_first & (gx == 0)
                    phase_ok = ~multi | first_item | (ph == slot)
                    got = ~ins.has_bias | (bx if whole else bx > gx)
                    ok = phase_ok & (~is_last | (got & room))
                    grp_end = ((gx == D - 1) if D > 1 else 1) | jx_end
                    # lane l's chunk is in bank (addr_l / C) mod NB: distinct banks for the NB
                    # lanes on the fast path (geometry.mm_fast_b); each bank reads its lane's row
                    bank_of = [lo(addr[l] >> lc, lnb) if lnb else Const(0, 1) for l in range(L)]
                    rows = Signal(NB * RB)
                    for b in range(NB):
                        hit = Const(0, RB)
                        for l in range(L):
                            hit = hit | Mux(bank_of[l] == b, (addr[l] >> (lc + lnb))[:RB], 0)
                        m.d.comb += rows[b * RB:(b + 1) * RB].eq(hit)
                    m.d.comb += [self.bank.rows.eq(rows), self.bank.re.eq(ok)]
                    with m.If(ok):
                        ends = grp_end if whole else e_end | grp_end    # this group's entry
                        feed(Const((1 << L) - 1, L), is_last, 0, ends)
                        m.d.sync += [f_rot[p].eq(bank_of[p]) for p in range(min(2, L))]
                        m.d.comb += push_desc.eq(is_last & ends)
                        issue_slot(first_item, grp_end)
                        step = ins.ldb << lnb
                        with m.If(~grp_end):
                            m.d.sync += [gx.eq(gx + 1), jx.eq(jx + L), gx_off.eq(gx_off + step),
                                         boff.eq(boff + step), jx_end.eq(jx + 2 * L >= N)]
                            if not whole:
                                with m.If(e_end):
                                    m.d.sync += je.eq(jx + L)
                        with m.Elif(~is_last):
                            m.d.sync += [kc.eq(kc + 1), c_off.eq(c_off + C), gx.eq(0),
                                         kc_first.eq(0), kc_last.eq(kc + 2 >= nk),
                                         jx.eq(j0), jx_end.eq(j0 + L >= N), gx_off.eq(0),
                                         boff.eq(c_off + C)]
                            if not whole:
                                m.d.sync += je.eq(j0)
                        with m.Else():
                            next_group()
                with m.Elif(ins.has_bias & (bx == 0)):
                    m.d.comb += [s_re.eq(1), s_chunk.eq(bias_chunk)]
                    with m.If(s_granted):
                        m.d.sync += [bx.eq(1), rd_bias.eq(1), rd_off.eq(lo(bias_at, lc))]
                        if not whole:
                            m.d.sync += rd_bx.eq(0)
                with m.Else():
                    # one lane-chunk per line read; lane ls's chunks at its slot
                    xa = Signal(_A)
                    with m.Switch(ls):
                        for l in range(L):
                            with m.Case(l):
                                m.d.comb += xa.eq(addr[l])
                    final = is_last & (ls + 1 >= nl)
                    first_item = kc_first & (ls == 0)
                    phase_ok = ~multi | first_item | (ph == slot)
                    m.d.comb += [s_re.eq(phase_ok & (~final | room)),
                                 s_chunk.eq((xa >> lc)[:QB])]
                    with m.If(s_granted):
                        m.d.sync += rd_off.eq(lo(xa, lc))
                        feed(Const(1, L) << ls, final, 1, 1)
                        m.d.comb += push_desc.eq(final)
                        issue_slot(first_item, ls + 1 >= nl)
                        with m.If(ls + 1 >= nl):
                            m.d.sync += [ls.eq(0), kc.eq(kc + 1), c_off.eq(c_off + C),
                                         kc_first.eq(0), kc_last.eq(kc + 2 >= nk),
                                         boff.eq(boff + C)]
                            with m.If(is_last):
                                m.next = "YIELD"
                        with m.Else():
                            m.d.sync += ls.eq(ls + 1)
            with m.State("YIELD"):   # slow path: one line-port cycle for the writer per group
                next_group()
            with m.State("DRAIN"):   # an empty MM: complete after the earlier MMs' writes
                with m.If((inflight == 0) & ~w_done):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
        return m
