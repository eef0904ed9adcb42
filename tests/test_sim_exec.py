"""Functional executor: each instruction against the loop nest of its semantics docstring
(fpgpt/isa/table.py) or the golden numerics (fpgpt/isa/numerics.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fpgpt.config import load_preset
from fpgpt.isa import INSTRUCTIONS, Instr, Program, Unit
from fpgpt.isa import numerics
from fpgpt.sim.executor import HANDLERS, run_stream
from fpgpt.sim.machine import Machine, SimError

HW = load_preset("tiny")
HBM_BYTES = 1 << 16


def mk(op, **kw):
    return Instr.make(op, **kw)


def run(m: Machine, instrs, *, mode="exact", name="main"):
    prog = Program({name: list(instrs) + [mk("HALT")]})
    return run_stream(m, prog, name, mode=mode)


def rand16(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float16)


def h16(m: Machine, byte_addr: int) -> np.float16:
    return m.hbm[byte_addr:byte_addr + 2].view(np.float16)[0]


@pytest.fixture
def m():
    return Machine(HW, HBM_BYTES)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_every_unit_instruction_has_a_handler():
    assert set(HANDLERS) == {d.name for d in INSTRUCTIONS if d.unit is not Unit.CTRL}


# ------------------------------------------------------------------------------------ DMA
def _dma_reference(f, S, hbm, load):
    """The LOAD/STORE loop nest of the table, element by element (f holds register values)."""
    for b in range(f["batch"]):
        for r in range(f["rows"] + f["rr"]):
            for c in range(f["cols"] + f["rc"]):
                rr = r + f["ra"]
                h = f["hbm"] + b * f["hbatch"] + (c * f["hstride"] + 2 * rr if f["transpose"]
                                                  else rr * f["hstride"] + 2 * c)
                s = f["sram"] + b * f["sbatch"] + r * f["sstride"] + c
                if load:
                    S[s] = hbm[h:h + 2].view(np.float16)[0]
                else:
                    hbm[h:h + 2] = np.array([S[s]], np.float16).view(np.uint8)


@pytest.mark.parametrize("transpose", [0, 1])
def test_load_store_strided_batched_with_registers(m, rng, transpose):
    m.hbm[:] = rng.integers(0, 256, m.hbm.size, dtype=np.uint8)
    m.hbm[1::2] &= 0x3B  # keep every FP16 finite and small (no NaN bit patterns to compare)
    f = dict(sram=100, hbm=0x206, rows=3, cols=4, hstride=38, sstride=7, batch=2, hbatch=1000,
             sbatch=50, transpose=transpose)
    regs = {5: 2, 6: 1, 7: 2}  # ra, rr, rc values
    prog = [mk("SETI", rd=r, imm=v) for r, v in regs.items()]
    run(m, prog + [mk("LOAD", ra=5, rr=6, rc=7, **f)])
    want = np.zeros_like(m.sram)
    _dma_reference({**f, "ra": 2, "rr": 1, "rc": 2}, want, m.hbm.copy(), load=True)
    np.testing.assert_array_equal(m.sram.view(np.uint16), want.view(np.uint16))
    assert np.count_nonzero(m.sram) > 2 * 4 * 6 // 2  # something was actually copied

    # STORE the same tile to another place and compare with the loop nest
    g = {**f, "hbm": 0x4000}
    before = m.hbm.copy()
    run(m, [mk("STORE", ra=5, rr=6, rc=7, **g)])
    want_h = before.copy()
    _dma_reference({**g, "ra": 2, "rr": 1, "rc": 2}, m.sram, want_h, load=False)
    np.testing.assert_array_equal(m.hbm, want_h)


def test_load_store_round_trip(m, rng):
    x = rand16(rng, 5, 6)
    m.write_array(0x100, x)
    run(m, [mk("LOAD", sram=10, hbm=0x100, rows=5, cols=6, hstride=12, sstride=8, batch=1),
            mk("STORE", sram=10, hbm=0x800, rows=5, cols=6, hstride=16, sstride=8, batch=1)])
    np.testing.assert_array_equal(m.sram[10:50].reshape(5, 8)[:, :6], x)
    back = m.read_array(0x800, 5 * 8).reshape(5, 8)[:, :6]
    np.testing.assert_array_equal(back, x)


def test_gather_rows_by_int32_index(m, rng):
    table = rand16(rng, 10, 6)
    m.write_array(0x1000, table)
    idx = np.array([9, 0, 3, 3, 7], np.int32)
    m.write_array(0x40, idx, np.int32)
    run(m, [mk("SETI", rd=2, imm=1), mk("SETI", rd=3, imm=1),
            mk("GATHER", sram=20, hbm=0x1000, idx=0x40, rows=3, cols=6, hstride=12, sstride=6,
               ra=2, rr=3)])
    got = m.sram[20:20 + 4 * 6].reshape(4, 6)
    np.testing.assert_array_equal(got, table[idx[1:5]])


def test_str_stores_register_as_int32(m):
    run(m, [mk("SETI", rd=4, imm=3), mk("SETI", rd=9, imm=-7),
            mk("STR", rs=9, hbm=0x20, ra=4)])
    assert m.read_array(0x20 + 12, 1, np.int32)[0] == -7


# ------------------------------------------------------------------------------------ MPU
def test_mm_bias_batch_registers_against_numerics(m, rng):
    nb, mm, k, n, rk, rn = 3, 5, 13, 6, 3, 2
    K, N = k + rk, n + rn
    A, B, bias = rand16(rng, nb, mm, K), rand16(rng, nb, N, K), rand16(rng, N)
    lda, ldb, ldc = K + 1, K + 3, N + 2
    a0, b0, c0, bias0 = 0, 2000, 6000, 9000
    for bt in range(nb):
        m.sram_rows("", a0 + bt * 200, mm, K, lda)[...] = A[bt]
        m.sram_rows("", b0 + bt * 400, N, K, ldb)[...] = B[bt]
    m.sram[bias0:bias0 + N] = bias
    run(m, [mk("SETI", rd=11, imm=rk), mk("SETI", rd=12, imm=rn),
            mk("MM", dst=c0, a=a0, b=b0, bias=bias0, m=mm, k=k, n=n, lda=lda, ldb=ldb, ldc=ldc,
               batch=nb, bsa=200, bsb=400, bsc=100, rk=11, rn=12, has_bias=1)])
    for bt in range(nb):
        want = numerics.mpu_matmul(A[bt], B[bt], bias, width=HW.mpu.width)
        got = m.sram_rows("", c0 + bt * 100, mm, N, ldc)
        np.testing.assert_array_equal(got.view(np.uint16), want.view(np.uint16))


def test_mm_causal_mask_uses_rn_offset(m, rng):
    mm, k, n, rn = 4, 8, 3, 3  # 4 new rows attending to 6 keys: row i sees keys j <= i + 3
    A, B = rand16(rng, mm, k), rand16(rng, n + rn, k)
    m.sram[:mm * k] = A.ravel()
    m.sram[100:100 + (n + rn) * k] = B.ravel()
    run(m, [mk("SETI", rd=1, imm=rn),
            mk("MM", dst=500, a=0, b=100, m=mm, k=k, n=n, lda=k, ldb=k, ldc=n + rn, batch=1,
               rn=1, mask=1)])
    got = m.sram[500:500 + mm * (n + rn)].reshape(mm, n + rn)
    want = numerics.mpu_matmul(A, B, width=HW.mpu.width)
    for i in range(mm):
        for j in range(n + rn):
            if j > i + rn:
                assert got[i, j] == -np.inf
            else:
                assert got[i, j].view(np.uint16) == want[i, j].view(np.uint16)
    assert np.isneginf(got).sum() == sum(max(0, (n + rn) - (i + rn + 1)) for i in range(mm))


def test_mm_fast_mode_close_to_exact(rng):
    out = {}
    A, B = rand16(rng, 7, 64), rand16(rng, 9, 64)
    for mode in ("exact", "fast"):
        m = Machine(HW, 0)
        m.sram[:A.size] = A.ravel()
        m.sram[1000:1000 + B.size] = B.ravel()
        run(m, [mk("MM", dst=3000, a=0, b=1000, m=7, k=64, n=9, lda=64, ldb=64, ldc=9,
                   batch=1)], mode=mode)
        out[mode] = m.sram[3000:3063].astype(np.float32)
    np.testing.assert_allclose(out["fast"], out["exact"], rtol=2e-3, atol=2e-3)


# ------------------------------------------------------------------------------------ VPU
def _vpu_setup(m, rng, rows, cols, lda, a0=0):
    x = rand16(rng, rows, cols, scale=2.0)
    m.sram_rows("", a0, rows, cols, lda)[...] = x
    return x


@pytest.mark.parametrize("op,fn", [("VADD", numerics.vadd), ("VMUL", numerics.vmul)])
def test_vadd_vmul_with_broadcast_row(m, rng, op, fn):
    x = _vpu_setup(m, rng, 3, 10, 12)
    y = rand16(rng, 10)
    m.sram[200:210] = y
    run(m, [mk("SETI", rd=2, imm=4),
            mk(op, dst=400, a=0, b=200, rows=3, cols=6, ldd=11, lda=12, ldb=0, rc=2)])
    got = m.sram_rows("", 400, 3, 10, 11)
    np.testing.assert_array_equal(got.view(np.uint16), fn(x, np.broadcast_to(y, x.shape)).view(np.uint16))
    # ldb != 0: a full matrix operand
    z = _vpu_setup(m, rng, 3, 10, 10, a0=600)
    run(m, [mk(op, dst=400, a=0, b=600, rows=3, cols=10, ldd=11, lda=12, ldb=10)])
    np.testing.assert_array_equal(m.sram_rows("", 400, 3, 10, 11), fn(x, z))


def test_gelu_softmax_layernorm_vcopy(m, rng):
    x = _vpu_setup(m, rng, 4, 20, 24)
    gamma, beta = rand16(rng, 20), rand16(rng, 20)
    m.sram[1000:1020], m.sram[1100:1120] = gamma, beta
    run(m, [mk("SETI", rd=3, imm=4),
            mk("GELU", dst=2000, a=0, rows=4, cols=16, ldd=20, lda=24, rc=3),
            mk("SOFTMAX", dst=3000, a=0, rows=4, cols=16, ldd=20, lda=24, rc=3, scale=0.125),
            mk("LAYERNORM", dst=4000, a=0, gamma=1000, beta=1100, rows=4, cols=20, ldd=20,
               lda=24, eps=1e-5),
            mk("VCOPY", dst=5000, a=0, rows=4, cols=16, ldd=21, lda=24, rc=3)])
    w = HW.vpu.width
    bits = lambda a: np.asarray(a).view(np.uint16)  # noqa: E731
    np.testing.assert_array_equal(bits(m.sram_rows("", 2000, 4, 20, 20)), bits(numerics.gelu(x)))
    np.testing.assert_array_equal(bits(m.sram_rows("", 3000, 4, 20, 20)),
                                  bits(numerics.softmax(x, scale=0.125, width=w)))
    np.testing.assert_array_equal(bits(m.sram_rows("", 4000, 4, 20, 20)),
                                  bits(numerics.layernorm(x, gamma, beta, eps=np.float32(1e-5), width=w)))
    np.testing.assert_array_equal(bits(m.sram_rows("", 5000, 4, 20, 21)), bits(x))


def test_in_place_vadd(m, rng):
    x = _vpu_setup(m, rng, 2, 8, 8)
    run(m, [mk("VADD", dst=0, a=0, b=0, rows=2, cols=8, ldd=8, lda=8, ldb=8)])
    np.testing.assert_array_equal(m.sram[:16].reshape(2, 8), numerics.vadd(x, x))


def test_argmax_sets_register_used_by_later_load(m, rng):
    v = np.zeros(12, np.float16)
    v[[3, 7]] = 5.0  # tie: the first index wins
    m.sram[0:12] = v
    rows = rand16(rng, 10, 4)
    m.write_array(0x200, rows)
    stats = run(m, [mk("ARGMAX", rd=6, a=0, cols=12),
                    mk("LOAD", sram=100, hbm=0x200, rows=1, cols=4, hstride=8, sstride=4,
                       batch=1, ra=6)])
    assert m.regs[6] == 3
    np.testing.assert_array_equal(m.sram[100:104], rows[3])
    assert stats.by_op == {"ARGMAX": 1, "LOAD": 1, "HALT": 1}


def test_bnz_loop_accumulates(m):
    m.sram[0:4] = 1.0
    body = [mk("SETI", rd=5, imm=6),
            mk("VADD", dst=8, a=8, b=0, rows=1, cols=4, ldd=4, lda=4, ldb=4),  # index 1
            mk("ADDI", rd=5, rs=5, imm=-1),
            mk("BNZ", rs=5, target=1)]
    stats = run(m, body)
    np.testing.assert_array_equal(m.sram[8:12], np.full(4, 6.0, np.float16))
    assert stats.by_op["VADD"] == 6 and stats.instructions == 1 + 6 * 3 + 1
    assert m.regs[5] == 0


def test_single_device_collectives_are_identities(m, rng):
    x = rand16(rng, 16)
    m.sram[:16] = x
    run(m, [mk("ALLREDUCE", sram=0, count=16), mk("ALLGATHER", sram=0, count=16)])
    np.testing.assert_array_equal(m.sram[:16], x)


# ------------------------------------------------------------------------------------ errors
def _err(m, instrs) -> str:
    with pytest.raises(SimError) as e:
        run(m, instrs)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_out_of_range_hbm_names_stream_index_op_operand_and_limit(m):
    msg = _err(m, [mk("NOP"), mk("LOAD", sram=0, hbm=HBM_BYTES - 8, rows=2, cols=4, hstride=8,
                                 sstride=4, batch=1)])
    assert "'main', instruction 1 (LOAD)" in msg and "source (hbm)" in msg
    assert f"{HBM_BYTES - 8:#x}" in msg and f"{HBM_BYTES + 8:#x}" in msg and f"{HBM_BYTES:#x}" in msg


def test_out_of_range_sram_and_register_offsets(m):
    n = HW.buffers.sram_elements
    msg = _err(m, [mk("SETI", rd=1, imm=n), mk("VCOPY", dst=0, a=0, rows=1, cols=0, ldd=0, lda=0,
                                                rc=1), mk("NOP"),
                   mk("MM", dst=n - 4, a=0, b=0, m=1, k=4, n=8, lda=4, ldb=4, ldc=8, batch=1)])
    assert "instruction 3 (MM)" in msg and "result (dst)" in msg and str(n) in msg
    msg = _err(m, [mk("SETI", rd=1, imm=-1), mk("STR", rs=0, hbm=0, ra=1)])
    assert "(STR)" in msg and "outside" in msg


def test_gather_bad_index_is_reported(m):
    m.write_array(0, np.array([1, 100000], np.int32), np.int32)
    msg = _err(m, [mk("GATHER", sram=0, hbm=0x100, idx=0, rows=2, cols=4, hstride=8, sstride=4)])
    assert "index 100000 (row 1)" in msg


def test_other_errors(m):
    assert "batch=0" in _err(m, [mk("LOAD", rows=1, cols=1)])
    assert "needs N>1 devices" in _err(m, [mk("SEND", sram=0, count=4)])
    with pytest.raises(SimError, match="missing HALT"):
        run_stream(m, Program({"s": [mk("NOP")]}), "s")
    with pytest.raises(SimError, match="capacity_mib"):
        Machine(HW, HW.hbm.capacity_bytes + 1)
    with pytest.raises(ValueError, match="mode"):
        run(m, [], mode="approx")
