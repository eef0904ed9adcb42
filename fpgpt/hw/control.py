"""AXI4-Lite control slave of the core (the host's view, Vitis ``ap_ctrl_hs`` style).

Register map (32-bit registers, byte addresses):

====== ======= =================================================================
offset access  meaning
====== ======= =================================================================
0x00   R/W     bit 0 ``ap_start`` (write 1: start the stream at ``entry``), bit 1 ``ap_done``
               (set when the stream halts, cleared when 0x00 is read), bit 2 ``ap_idle``,
               bit 3 ``error`` (the program is longer than the instruction memory; not run),
               bit 4 ``net_error`` (a NET transfer's length disagreed with its instruction;
               sticky)
0x10   R/W     ``entry``: instruction index where the stream starts
0x14   R/W     token count (for the host's bookkeeping; the program reads R3, docs/execution.md)
0x18   R/W     data base, low 32 bits (added to every HBM AXI address)
0x1C   R/W     data base, high 32 bits
0x20   R/W     program base, low 32 bits (HBM byte address of the program image, 64-byte
               aligned; fpgpt.hw.fetch)
0x24   R/W     program base, high 32 bits
0x28   R/W     program length in instruction words; writing 0x20/0x24/0x28 makes the next
               ``ap_start`` load the image first
0x2C   R       cycles of the last run, from its first fetch to ``HALT`` (counting while running)
0x30   R       cycles the last program load took
0x34   R/W     ring position: bits [7:0] this device's index, [15:8] the device count (reset: 0, 1)
0x40+4i R/W    register R[i], i = 0..15 (writes while idle; R0 ignores writes)
0x80+4u R      ``completed`` counter of unit u (dma, mpu, vpu, net), for status
0x90+4u R      run cycle (as 0x2C counts) of unit u's latest completion, for profiling
====== ======= =================================================================
"""

# No `from __future__ import annotations`: wiring.Component reads the port annotations as values.
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..isa.table import NUM_REGS, REG_BITS, WAIT_UNITS

__all__ = ["axi4lite_signature", "ControlSlave", "REG_CTRL", "REG_ENTRY", "REG_TOKENS",
           "REG_DATA_BASE", "REG_PROG_BASE", "REG_PROG_LEN", "REG_CYCLES", "REG_LOAD_CYCLES",
           "REG_RING", "REG_R0", "REG_COMPLETED", "REG_LAST_DONE", "ADDR_BITS"]

REG_CTRL, REG_ENTRY, REG_TOKENS = 0x00, 0x10, 0x14
REG_DATA_BASE, REG_PROG_BASE, REG_PROG_LEN = 0x18, 0x20, 0x28
REG_CYCLES, REG_LOAD_CYCLES, REG_RING = 0x2C, 0x30, 0x34
REG_R0, REG_COMPLETED, REG_LAST_DONE = 0x40, 0x80, 0x90
#: Byte address bits of the control slave (the map above fits in 256 bytes).
ADDR_BITS = 8


def axi4lite_signature(addr_bits: int = ADDR_BITS, data_bits: int = 32) -> wiring.Signature:
    """An AXI4-Lite *slave* port with AMBA member names (``In`` = driven by the host)."""
    return wiring.Signature({
        "awaddr": In(addr_bits), "awvalid": In(1), "awready": Out(1),
        "wdata": In(data_bits), "wstrb": In(data_bits // 8), "wvalid": In(1), "wready": Out(1),
        "bresp": Out(2), "bvalid": Out(1), "bready": In(1),
        "araddr": In(addr_bits), "arvalid": In(1), "arready": Out(1),
        "rdata": Out(data_bits), "rresp": Out(2), "rvalid": Out(1), "rready": In(1),
    })


class ControlSlave(wiring.Component):
    """The register map above on an AXI4-Lite slave port ``s_axi``.

    Ports
    -----
    s_axi : Out(axi4lite_signature())  (the signature is written from the slave side)
    start : Out(1)      one-cycle pulse on a write of 1 to ``ap_start`` while idle
    running : In(1)     the dispatcher runs a stream
    halted : In(1)      one-cycle pulse: the stream halted (sets ``ap_done``)
    error : In(1)       the program does not fit (status bit 3)
    entry : Out(32), tokens : Out(32), data_base : Out(64), prog_base : Out(64), prog_len : Out(32)
    prog_dirty : Out(1) program base or length written since the last load
    prog_loaded : In(1) one-cycle pulse: the program was loaded (clears ``prog_dirty``)
    cycles, load_cycles : In(32)   counters for 0x2C and 0x30
    ring : Out(32)      0x34: device index (bits 7:0) and count (bits 15:8)
    net_error : In(1)   status bit 4
    reg_we, reg_waddr, reg_wdata : Out   host writes to R[i], to the dispatcher
    regs : In(16 * 32)  the register file, for reads
    completed : In(4 * 32)  the units' completed counters
    last_done : In(4 * 32)  the run cycle of each unit's latest completion
    """

    s_axi: Out(axi4lite_signature())
    start: Out(1)
    running: In(1)
    halted: In(1)
    entry: Out(32)
    tokens: Out(32)
    data_base: Out(64)
    prog_base: Out(64)
    prog_len: Out(32)
    prog_dirty: Out(1)
    prog_loaded: In(1)
    error: In(1)
    cycles: In(32)
    load_cycles: In(32)
    ring: Out(32, init=1 << 8)
    net_error: In(1)
    reg_we: Out(1)
    reg_waddr: Out(4)
    reg_wdata: Out(REG_BITS)
    regs: In(NUM_REGS * REG_BITS)
    completed: In(len(WAIT_UNITS) * 32)
    last_done: In(len(WAIT_UNITS) * 32)

    def elaborate(self, platform):
        m = Module()
        s = self.s_axi
        done = Signal()

        # ---- write: take AW and W together, then answer on B ---------------------------------
        take_w = s.awvalid & s.wvalid & ~s.bvalid
        m.d.comb += [s.awready.eq(take_w), s.wready.eq(take_w), s.bresp.eq(0)]
        with m.If(take_w):
            m.d.sync += s.bvalid.eq(1)
        with m.Elif(s.bready):
            m.d.sync += s.bvalid.eq(0)
        # The 32-bit words of the register map that hold plain values (written and read back).
        words = ((REG_ENTRY, self.entry, 0), (REG_TOKENS, self.tokens, 0),
                 (REG_DATA_BASE, self.data_base, 0), (REG_DATA_BASE + 4, self.data_base, 32),
                 (REG_PROG_BASE, self.prog_base, 0), (REG_PROG_BASE + 4, self.prog_base, 32),
                 (REG_PROG_LEN, self.prog_len, 0), (REG_RING, self.ring, 0))
        counters = ((REG_CYCLES, self.cycles), (REG_LOAD_CYCLES, self.load_cycles))
        dirty = Signal()
        addr, wd = s.awaddr, s.wdata
        with m.If(take_w):
            with m.Switch(addr[2:]):
                with m.Case(REG_CTRL >> 2):
                    m.d.comb += self.start.eq(wd[0] & ~self.running)
                for off, sig, lo in words:
                    with m.Case(off >> 2):
                        m.d.sync += sig[lo:lo + 32].eq(wd)
                        if off in (REG_PROG_BASE, REG_PROG_BASE + 4, REG_PROG_LEN):
                            m.d.comb += dirty.eq(1)
                for i in range(NUM_REGS):
                    with m.Case((REG_R0 >> 2) + i):
                        m.d.comb += [self.reg_we.eq(~self.running), self.reg_waddr.eq(i),
                                     self.reg_wdata.eq(wd)]

        # ---- read: one outstanding read ------------------------------------------------------
        m.d.comb += [s.arready.eq(~s.rvalid), s.rresp.eq(0)]
        clear_done = Signal()
        with m.If(s.arvalid & ~s.rvalid):
            m.d.sync += s.rvalid.eq(1)
            with m.Switch(s.araddr[2:]):
                with m.Case(REG_CTRL >> 2):
                    m.d.sync += s.rdata.eq(done << 1 | ~self.running << 2 | self.error << 3
                                           | self.net_error << 4)
                    m.d.comb += clear_done.eq(1)
                for off, sig, lo in words:
                    with m.Case(off >> 2):
                        m.d.sync += s.rdata.eq(sig[lo:lo + 32])
                for off, sig in counters:
                    with m.Case(off >> 2):
                        m.d.sync += s.rdata.eq(sig)
                for i in range(NUM_REGS):
                    with m.Case((REG_R0 >> 2) + i):
                        m.d.sync += s.rdata.eq(self.regs[32 * i:32 * i + 32])
                for u in range(len(WAIT_UNITS)):
                    with m.Case((REG_COMPLETED >> 2) + u):
                        m.d.sync += s.rdata.eq(self.completed[32 * u:32 * u + 32])
                    with m.Case((REG_LAST_DONE >> 2) + u):
                        m.d.sync += s.rdata.eq(self.last_done[32 * u:32 * u + 32])
                with m.Default():
                    m.d.sync += s.rdata.eq(0)
        with m.Elif(s.rready):
            m.d.sync += s.rvalid.eq(0)

        # A load clears the flag; a register write in the same cycle sets it again.
        with m.If(dirty):
            m.d.sync += self.prog_dirty.eq(1)
        with m.Elif(self.prog_loaded):
            m.d.sync += self.prog_dirty.eq(0)

        # ap_done: set by the halt pulse, cleared by a read of 0x00 (a halt wins over the read).
        with m.If(self.halted):
            m.d.sync += done.eq(1)
        with m.Elif(clear_done):
            m.d.sync += done.eq(0)
        return m
