"""AXI4 as the core's master ports speak it: the port signature and the protocol's limits."""

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AXI_ADDR_BITS", "AXI_4K_BYTES", "AXI_MAX_BEATS", "axi4_signature"]

#: Address width of every AXI4 master port (Vitis kernels use 64-bit buffer addresses).
AXI_ADDR_BITS = 64
#: An AXI burst may not cross a 4 KiB boundary (the AMBA AXI4 burst rules).
AXI_4K_BYTES = 4096
#: Beats of an INCR burst at most (the AMBA AXI4 burst rules).
AXI_MAX_BEATS = 256


def axi4_signature(addr_bits: int, data_bits: int, id_bits: int = 1) -> wiring.Signature:
    """An AXI4 master port with AMBA member names (``awaddr``, ``awvalid`` ...), flat, so that
    Amaranth names the Verilog ports ``<port>__awaddr`` (``Out`` = driven by the master)."""
    m = {}
    for ch in ("aw", "ar"):
        m.update({f"{ch}id": Out(id_bits), f"{ch}addr": Out(addr_bits), f"{ch}len": Out(8),
                  f"{ch}size": Out(3), f"{ch}burst": Out(2), f"{ch}valid": Out(1),
                  f"{ch}ready": In(1)})
    m.update({"wdata": Out(data_bits), "wstrb": Out(data_bits // 8), "wlast": Out(1),
              "wvalid": Out(1), "wready": In(1),
              "bid": In(id_bits), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
              "rid": In(id_bits), "rdata": In(data_bits), "rresp": In(2), "rlast": In(1),
              "rvalid": In(1), "rready": Out(1)})
    return wiring.Signature(m)
