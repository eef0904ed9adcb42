"""The DMA engine's behaviour in Python, beside its RTL (fpgpt/hw/dma.py): where an HBM byte
lives (:func:`channel_address`), which path an instruction takes (:func:`dma_path`) and its
exact cycles on an ideal memory (:func:`engine_cycles`, which the Verilator bench
tests/rtl/cocotb_dma.py checks and fpgpt.sim.costs's DMA charge follows). The module docstring
of fpgpt/hw/dma.py describes the address mapping and the two paths.
"""

from __future__ import annotations

from ..config import HardwareConfig
from ..geometry import dma_stripe_aligned, stripe_elements

__all__ = ["channel_address", "dma_path", "engine_cycles"]


def channel_address(hw: HardwareConfig, a: int) -> tuple[int, int]:
    """``(channel, byte offset in that channel's memory)`` of HBM byte ``a`` (module docstring)."""
    g, c = hw.hbm.interleave_bytes, hw.hbm.channels
    return (a // g) % c, (a // (g * c)) * g + a % g


def dma_path(hw: HardwareConfig, op: str, f: dict) -> str:
    """Which path the RTL DMA takes for a captured instruction: ``"stripe"``, ``"element"``,
    ``"str"`` (STR) or ``"empty"`` (nothing to move).

    The stripe path needs ``fpgpt.geometry.stripes_ok`` and the *alignment rule*
    (``geometry.dma_stripe_aligned``): every row's first HBM
    element address congruent to its scratchpad address modulo the chunk ``Cs = mpu.width``,
    with every HBM byte address even. Per instruction (``C`` = ``Cs``, ``/`` exact):

    - LOAD/STORE, not transposed: ``(hbm + ra*hstride)/2 ≡ sram``, ``hstride/2 ≡ sstride`` and,
      when ``batch > 1``, ``hbatch/2 ≡ sbatch`` (mod ``C``); ``hbm + ra*hstride``, ``hstride``
      (and ``hbatch``) even;
    - GATHER: ``hbm/2 ≡ sram``, ``hstride/2 ≡ 0`` and ``sstride ≡ 0`` (mod ``C``), ``hbm`` and
      ``hstride`` even (any index then keeps the rule);
    - transposed LOAD/STORE: never (element path).

    ``f`` holds the captured fields (register fields as their values, as
    :func:`fpgpt.sim.control.capture` gives them).
    """
    if op == "STR":
        return "str"
    if op == "GATHER":
        if f["rows"] + f["rr"] == 0 or f["cols"] == 0:
            return "empty"
    elif f["rows"] + f["rr"] == 0 or f["cols"] + f["rc"] == 0 or f["batch"] == 0:
        return "empty"
    return "stripe" if dma_stripe_aligned(hw, op, f) else "element"


def _runs(op: str, f: dict) -> list[tuple[int, int]]:
    """``(first HBM byte, elements)`` of every run of a LOAD/STORE, in issue order."""
    re, ce = f["rows"] + f["rr"], f["cols"] + f["rc"]
    runs = []
    for b in range(f["batch"]):
        hb = f["hbm"] + b * f["hbatch"]
        if f.get("transpose"):
            runs += [(hb + c * f["hstride"] + 2 * f["ra"], re) for c in range(ce)]
        else:
            runs += [(hb + (r + f["ra"]) * f["hstride"], ce) for r in range(re)]
    return runs


def _stripes(hw: HardwareConfig, a: int, n: int) -> int:
    """Stripes (``channels × beat`` bytes, aligned) that ``n`` elements from byte ``a`` touch."""
    sb = 2 * stripe_elements(hw)
    return (a + 2 * n - 1) // sb - a // sb + 1


def _pieces(hw: HardwareConfig, a: int, n: int) -> int:
    """Interleave granules that ``n`` elements from byte ``a`` touch (element path pieces)."""
    g = hw.hbm.interleave_bytes
    return (a + 2 * n - 1) // g - a // g + 1


def engine_cycles(hw: HardwareConfig, op: str, f: dict, *, latency, indices=None,
                  outstanding: int = 8) -> int:
    """Exact cycles of one DMA instruction on an ideal memory: from the cycle the command is
    taken to the ``done`` pulse, as cocotb_dma's bench counts them.

    Ideal memory: every channel takes an AR/AW/W each cycle and returns one R beat per cycle,
    the first ``Lr`` cycles after its AR, and a burst's B ``Lw`` cycles after its last W beat;
    the scratchpad grants every request. With ``S`` the stripes and ``Sr`` a row's stripes
    (:func:`dma_path`; a run of ``n`` elements from byte ``a`` touches
    ``(a + 2n - 1)//(C·B) - a//(C·B) + 1``), ``E``/``Er`` the elements and ``Q``/``Qr`` the
    pieces (interleave granules touched, per run), ``R`` a GATHER's rows::

        stripe LOAD     S + Lr + 4                one stripe per cycle, every channel at once
        stripe STORE    S + Lw + 7
        stripe GATHER   3 + sum over rows (Sr + 2·Lr + 6)        index, then the row
        element LOAD    E + Q + Lr + 3            one element per cycle + 1 per piece
        element STORE   E + Lw + 7                one element per cycle, pieces overlapped
        element GATHER  3 + sum over rows (Er + Qr + 2·Lr + 5)
        STR             Lw + 8
        empty           3

    A GATHER row's index word goes into a register as it arrives and is multiplied by
    ``hstride`` the cycle after, into two registers (two cycles of each row's constant: the
    32:1 channel select in front of the multiply, then the multiply itself, limited the u280
    DMA's clock, docs/rtl-clock.md).

    Segments (bursts) cost nothing beyond their stripes: a segment's bursts are issued in one
    cycle while earlier stripes stream, ``outstanding`` segments ahead, so the channels never
    starve while ``Lr < outstanding``. An element STORE's pieces cost nothing beyond their
    elements while ``Lw + 2 <= outstanding``: a piece's AW must precede its data by a cycle or
    two, and the bursts awaiting B are bounded (measured on the AxiRam bench, ``Lw = 2``: exact
    with ``outstanding`` 4, slower with 3).

    Parameters
    ----------
    hw : HardwareConfig
    op : str
        ``"LOAD"``, ``"STORE"``, ``"GATHER"`` or ``"STR"``.
    f : dict
        The captured fields (register fields as values, :func:`fpgpt.sim.control.capture`).
    latency : int or (int, int)
        ``Lr`` and ``Lw`` (one int: both), cycles.
    indices : sequence of int, optional
        A GATHER's table rows (its index vector); needed unless every row costs the same
        (``hstride`` a multiple of the stripe, or of the interleave on the element path).
    outstanding : int
        The DMA's ``outstanding``.

    Raises
    ------
    ValueError
        If ``latency`` is not below ``outstanding`` (an element STORE: ``Lw + 2`` above it;
        the formula assumes no starvation), or a GATHER's cost depends on indices that were
        not given.
    """
    lr, lw = (latency, latency) if isinstance(latency, int) else latency
    if not (0 <= lr < outstanding and 0 <= lw):
        raise ValueError(f"latency {latency!r} must be below outstanding={outstanding} for "
                         "engine_cycles to be exact; build the DMA with more outstanding")
    path = dma_path(hw, op, f)
    if path == "element" and op == "STORE" and lw + 2 > outstanding:
        raise ValueError(f"write latency {lw} must be at most outstanding-2={outstanding - 2} "
                         "for an element STORE's engine_cycles to be exact; build the DMA with "
                         "more outstanding")
    if path == "empty":
        return 3
    if path == "str":
        return lw + 8
    stripe = path == "stripe"
    if op == "GATHER":
        n, hs, sb = f["cols"], f["hstride"], hw.hbm.channels * hw.hbm.port_bits // 8
        rows = f["rows"] + f["rr"]
        if indices is None:
            if hs % (sb if stripe else hw.hbm.interleave_bytes):
                raise ValueError("a GATHER whose rows' alignment varies needs its indices=")
            indices = [0] * rows
        starts = [f["hbm"] + t * hs for t in indices]
        per = (sum(_stripes(hw, a, n) for a in starts) if stripe
               else sum(n + _pieces(hw, a, n) for a in starts))
        return 3 + per + rows * (2 * lr + (6 if stripe else 5))
    runs = _runs(op, f)
    if stripe:
        s = sum(_stripes(hw, a, n) for a, n in runs)
        return s + (lr + 4 if op == "LOAD" else lw + 7)
    e = sum(n for _, n in runs)
    if op == "STORE":
        return e + lw + 7
    return e + sum(_pieces(hw, a, n) for a, n in runs) + lr + 3
