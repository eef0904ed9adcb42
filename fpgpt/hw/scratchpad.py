"""The scratchpad: one FP16 address space of ``hw.buffers.sram_elements`` elements, banked.

Geometry (docs/rtl.md, "The wide scratchpad"): a *chunk* is ``C = hw.mpu.width`` consecutive
elements, a *line* ``P = C·NB`` elements over ``NB = hw.mpu.lanes`` *banks*; chunk ``q`` lives
in bank ``q % NB`` at row ``q // NB``. Every bank is a true dual-port RAM (URAM288 is):

* port A of every bank is the MPU's :func:`bank_signature` port: each bank reads its own row in
  the same cycle, so the MPU's lanes get one chunk of B each per cycle (never refused);
* port B is shared, with fixed priority (requester 0 first), by the requesters' ports: a
  :func:`line_signature` port moves the ``P`` elements of ``NB`` consecutive chunks starting at
  any chunk (one per bank, rotated into place) per grant, with an element write mask; a
  :func:`port_signature` port moves one element (the narrow port of units not yet widened).

Read data appear one cycle after the grant (registered reads, as a BRAM/URAM gives them). A
requester whose request loses holds it until ``grant``. Reads and writes of the two ports to the
same row in one cycle are ordered by the dispatcher's hazard rules, never by the memory.
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from collections.abc import Sequence

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import HardwareConfig
from ..geometry import bank_count, chunk_elements, line_elements

__all__ = ["ELEMENT_BITS", "addr_bits", "chunk_elements", "bank_count", "line_elements",
           "chunk_bits", "row_bits", "port_signature", "line_signature", "bank_signature",
           "Scratchpad", "SPRAM_MODULE", "spram_verilog", "check_geometry"]

#: The storage macro's Verilog module (written by :func:`spram_verilog`): one bank. It is a black
#: box to Amaranth because Amaranth writes an initialiser line per word of a memory, which for
#: the u280's 8 M-element scratchpad is a file of gigabytes; Vivado infers URAM from this one.
SPRAM_MODULE = "fpgpt_spram"

#: Bits of one scratchpad element (FP16).
ELEMENT_BITS = 16


def check_geometry(hw: HardwareConfig) -> None:
    """Raise ValueError (one line) if ``hw`` cannot be laid out as banked lines."""
    nb, p = bank_count(hw), line_elements(hw)
    if nb & (nb - 1):
        raise ValueError(f"mpu.lanes = {nb} is not a power of two: the scratchpad has one bank "
                         f"per lane and finds a chunk's bank from its low address bits; use "
                         f"{1 << (nb.bit_length() - 1)} or {1 << nb.bit_length()}")
    if hw.buffers.sram_elements % p:
        raise ValueError(f"buffers.sram_kib gives {hw.buffers.sram_elements} elements, not a "
                         f"multiple of the {p}-element line (mpu.lanes x mpu.width); round it")


def addr_bits(hw: HardwareConfig) -> int:
    """Bits of a scratchpad element address for ``hw`` (at least 1)."""
    return max(1, (hw.buffers.sram_elements - 1).bit_length())


def chunk_bits(hw: HardwareConfig) -> int:
    """Bits of a chunk index (at least 1)."""
    return max(1, (hw.buffers.sram_elements // chunk_elements(hw) - 1).bit_length())


def row_bits(hw: HardwareConfig) -> int:
    """Bits of a bank row (at least 1)."""
    return max(1, (hw.buffers.sram_elements // line_elements(hw) - 1).bit_length())


def spram_verilog(hw: HardwareConfig) -> str:
    """Verilog of one bank: port A read-only, port B read/write with element write enables."""
    c, rb = chunk_elements(hw), row_bits(hw)
    w, depth = c * ELEMENT_BITS, hw.buffers.sram_elements // line_elements(hw)
    return (f"// fpgpt scratchpad bank: {depth} x {c} FP16, true dual port, registered reads\n"
            f"module {SPRAM_MODULE} (input wire clk,\n"
            f"    input wire [{rb - 1}:0] a_addr, input wire a_re, output reg [{w - 1}:0] a_rdata,\n"
            f"    input wire [{rb - 1}:0] b_addr, input wire [{c - 1}:0] b_we,\n"
            f"    input wire [{w - 1}:0] b_wdata, input wire b_re, output reg [{w - 1}:0] b_rdata);\n"
            f"  (* ram_style = \"ultra\" *) reg [{w - 1}:0] cells [0:{depth - 1}];\n"
            f"  integer e;\n"
            f"  always @(posedge clk) begin\n"
            f"    if (a_re) a_rdata <= cells[a_addr];\n"
            f"  end\n"
            f"  always @(posedge clk) begin\n"
            f"    for (e = 0; e < {c}; e = e + 1)\n"
            f"      if (b_we[e]) cells[b_addr][e*{ELEMENT_BITS} +: {ELEMENT_BITS}] <= "
            f"b_wdata[e*{ELEMENT_BITS} +: {ELEMENT_BITS}];\n"
            f"    if (b_re) b_rdata <= cells[b_addr];\n"
            f"  end\nendmodule\n")


def port_signature(hw: HardwareConfig) -> wiring.Signature:
    """A one-element requester port (``Out`` from the requester's side).

    Members: ``addr``, ``re``, ``we``, ``wdata`` (out), ``rdata``, ``grant`` (in). A request
    (``re`` or ``we``) is served in the cycle ``grant`` is high; read data appear on ``rdata``
    in the next cycle.
    """
    return wiring.Signature({
        "addr": Out(addr_bits(hw)), "re": Out(1), "we": Out(1), "wdata": Out(ELEMENT_BITS),
        "rdata": In(ELEMENT_BITS), "grant": In(1),
    })


def line_signature(hw: HardwareConfig) -> wiring.Signature:
    """A line requester port (``Out`` from the requester's side).

    Members: ``chunk`` (first chunk index), ``re``, ``we``, ``wdata`` (``16·P`` bits: element
    ``i`` = address ``chunk·C + i`` in bits ``[16i, 16i+16)``), ``wmask`` (``P`` element write
    enables) out; ``rdata`` (``16·P``), ``grant`` in. Read data are on ``rdata`` in the cycle
    after the grant only.
    """
    p = line_elements(hw)
    return wiring.Signature({
        "chunk": Out(chunk_bits(hw)), "re": Out(1), "we": Out(1),
        "wdata": Out(ELEMENT_BITS * p), "wmask": Out(p),
        "rdata": In(ELEMENT_BITS * p), "grant": In(1),
    })


def bank_signature(hw: HardwareConfig) -> wiring.Signature:
    """The MPU's bank read port (``Out`` from the MPU's side), never refused.

    Members: ``rows`` (bank ``b``'s row in bits ``[b·RB, (b+1)·RB)``, ``RB`` =
    :func:`row_bits`), ``re`` out; ``rdata`` in: one cycle after ``re``, bank ``b``'s chunk at
    its row (elements ``(row·NB + b)·C ..+C``) in bits ``[16·C·b, 16·C·(b+1))``.
    """
    return wiring.Signature({
        "rows": Out(bank_count(hw) * row_bits(hw)), "re": Out(1),
        "rdata": In(ELEMENT_BITS * line_elements(hw)),
    })


_KINDS = {"element": port_signature, "line": line_signature}


class Scratchpad(wiring.Component):
    """``hw.buffers.sram_elements`` FP16 elements in ``NB`` dual-ported banks (module docstring).

    Parameters
    ----------
    hw : HardwareConfig
    ports : int or sequence of {"element", "line"}
        Port B requesters in priority order, ``port0`` (highest) first; an integer ``n`` means
        ``n`` element ports.
    bank : bool
        Whether to give port A to a ``bank`` member (:func:`bank_signature`, for the MPU).
    """

    def __init__(self, *, hw: HardwareConfig, ports: "int | Sequence[str]" = 1,
                 bank: bool = False):
        if not isinstance(hw, HardwareConfig):
            raise TypeError(f"hw must be a HardwareConfig, not {hw!r}")
        if isinstance(ports, int) and not isinstance(ports, bool):
            if ports < 1:
                raise ValueError(f"ports must be a positive integer, not {ports!r}")
            ports = ("element",) * ports
        ports = tuple(ports)
        if not ports or any(k not in _KINDS for k in ports):
            raise ValueError(f"ports must be a positive integer or a sequence of "
                             f"'element'/'line', not {ports!r}")
        check_geometry(hw)
        self._hw = hw
        self.kinds = ports
        self.has_bank = bool(bank)
        members = {f"port{i}": In(_KINDS[k](hw)) for i, k in enumerate(ports)}
        if self.has_bank:
            members["bank"] = In(bank_signature(hw))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        hw = self._hw
        c, nb, p = chunk_elements(hw), bank_count(hw), line_elements(hw)
        lc, lnb = c.bit_length() - 1, nb.bit_length() - 1
        rb, cw = row_bits(hw), c * ELEMENT_BITS
        ports = [getattr(self, f"port{i}") for i in range(len(self.kinds))]

        # ---- the granted requester's access, as a line access ----------------------------------
        chunk, re, we = Signal(chunk_bits(hw)), Signal(), Signal()
        wdata, wmask = Signal(ELEMENT_BITS * p), Signal(p)
        granted = Signal(range(max(2, len(ports))))
        for i in reversed(range(len(ports))):
            with m.If(ports[i].re | ports[i].we):
                m.d.comb += granted.eq(i)
        for i, (kind, pt) in enumerate(zip(self.kinds, ports)):
            with m.If(granted == i):
                m.d.comb += [pt.grant.eq(pt.re | pt.we), re.eq(pt.re), we.eq(pt.we)]
                if kind == "line":
                    m.d.comb += [chunk.eq(pt.chunk), wdata.eq(pt.wdata), wmask.eq(pt.wmask)]
                else:       # element e of chunk addr // C: lane e of the line's first chunk
                    m.d.comb += [chunk.eq(pt.addr >> lc), wdata.eq(Cat(*[pt.wdata] * p)),
                                 wmask.eq(Const(1, c) << pt.addr[:lc] if lc else 1)]

        # ---- banks ----------------------------------------------------------------------------
        q0 = chunk[:lnb] if lnb else Const(0, 1)    # bank of the access's first chunk
        qrow = chunk[lnb:]
        a_data, b_data = [], []
        for b in range(nb):
            k = Signal(range(nb), name=f"k{b}")      # which chunk of the line bank b holds
            m.d.comb += k.eq((Const(b, max(1, lnb)) - q0)[:lnb] if lnb else 0)
            row = Signal(rb, name=f"row{b}")
            m.d.comb += row.eq(qrow + (q0 > b) if b < nb - 1 else qrow)   # wrapped into the next row
            bw, bd = Signal(cw, name=f"bwdata{b}"), Signal(c, name=f"bwe{b}")
            with m.Switch(k):
                for kk in range(nb):
                    with m.Case(kk):
                        m.d.comb += [bw.eq(wdata[kk * cw:(kk + 1) * cw]),
                                     bd.eq(wmask[kk * c:(kk + 1) * c])]
            ad, bdat = Signal(cw, name=f"a_rdata{b}"), Signal(cw, name=f"b_rdata{b}")
            if self.has_bank:
                a_row, a_re = self.bank.rows[b * rb:(b + 1) * rb], self.bank.re
            else:
                a_row, a_re = Const(0, rb), Const(0, 1)
            m.submodules[f"bank{b}"] = Instance(
                SPRAM_MODULE, i_clk=ClockSignal(), i_a_addr=a_row, i_a_re=a_re, o_a_rdata=ad,
                i_b_addr=row, i_b_we=Mux(we, bd, 0), i_b_wdata=bw, i_b_re=re, o_b_rdata=bdat)
            a_data.append(ad)
            b_data.append(bdat)
        if self.has_bank:
            m.d.comb += self.bank.rdata.eq(Cat(*a_data))

        # ---- read data: rotate the banks' chunks back into line order -------------------------
        q0_r = Signal.like(q0)
        m.d.sync += q0_r.eq(q0)
        line = Signal(ELEMENT_BITS * p)
        for kk in range(nb):
            sel = Signal(cw, name=f"rchunk{kk}")
            with m.Switch((q0_r + kk)[:lnb] if lnb else 0):
                for b in range(nb):
                    with m.Case(b):
                        m.d.comb += sel.eq(b_data[b])
            m.d.comb += line[kk * cw:(kk + 1) * cw].eq(sel)
        for kind, pt in zip(self.kinds, ports):
            if kind == "line":
                m.d.comb += pt.rdata.eq(line)
            else:
                e_r = Signal(max(1, lc), name="e_r")
                with m.If(pt.grant):
                    m.d.sync += e_r.eq(pt.addr[:lc] if lc else 0)
                m.d.comb += pt.rdata.eq(line.word_select(e_r, ELEMENT_BITS) if lc
                                        else line[:ELEMENT_BITS])
        return m
