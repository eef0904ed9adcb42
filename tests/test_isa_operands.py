"""The one definition of instruction memory operands: coverage, addressing, vectorised evaluation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fpgpt.isa import BY_NAME, INSTRUCTIONS, Kind, Unit
from fpgpt.isa.operands import Operand, bounds, has_operands, operands, sizes


def test_every_non_ctrl_instruction_has_operands():
    for d in INSTRUCTIONS:
        assert has_operands(d.name) == (d.unit is not Unit.CTRL), d.name
        if d.unit is Unit.CTRL:
            assert operands(d.name, {}) == []
        for imm, reg in sizes(d.name):
            assert imm in d.field_names and (reg is None or BY_NAME[d.name].fields[
                d.field_names.index(reg)].kind is Kind.REG)


def _zero(op: str, **kw) -> dict[str, int]:
    return {f.name: 0 for f in BY_NAME[op].fields} | kw


def _cells(o: Operand) -> set[int]:
    return {int(s) + i for s in o.starts() for i in range(o.length)}


def test_load_plain_and_transposed_with_register_row_offset():
    f = _zero("LOAD", sram=10, hbm=1000, rows=2, rr=1, cols=3, hstride=100, sstride=8, batch=2,
              hbatch=4000, sbatch=50, ra=5)
    h, s = operands("LOAD", f)
    assert (h.space, h.write, s.space, s.write) == ("H", False, "S", True)
    # The semantics loop of the table, byte by byte (3 rows, 3 cols, 2 matrices).
    want_h = {1000 + b * 4000 + (r + 5) * 100 + 2 * c + k
              for b in range(2) for r in range(3) for c in range(3) for k in range(2)}
    want_s = {10 + b * 50 + r * 8 + c for b in range(2) for r in range(3) for c in range(3)}
    assert _cells(h) == want_h and _cells(s) == want_s
    assert h.extent() == (min(want_h), max(want_h) + 1)
    t = operands("STORE", f | {"transpose": 1})
    h = next(o for o in t if o.space == "H")
    assert h.write and _cells(h) == {1000 + b * 4000 + c * 100 + 2 * (r + 5) + k for b in range(2)
                                     for r in range(3) for c in range(3) for k in range(2)}


def test_mm_bias_only_with_the_flag_and_allgather_spans_all_devices():
    f = _zero("MM", dst=900, a=0, b=100, bias=500, m=2, k=4, n=3, lda=4, ldb=4, ldc=3, batch=1)
    assert [o.name for o in operands("MM", f)] == ["a", "b", "dst"]
    ops = operands("MM", f | {"has_bias": 1})
    assert [o.name for o in ops] == ["a", "b", "bias", "dst"]
    assert ops[2].extent() == (500, 503) and ops[3].write
    g = operands("ALLGATHER", {"sram": 64, "count": 10}, devices=4)
    assert {(o.write, o.extent()) for o in g} == {(False, (64, 104)), (True, (64, 104))}
    assert [o.write for o in operands("SEND", {"sram": 0, "count": 1, "prev": 0})] == [False]
    assert [o.write for o in operands("RECV", {"sram": 0, "count": 1, "prev": 0})] == [True]


def test_gather_table_is_data_dependent_and_bounds_keep_its_first_row():
    f = _zero("GATHER", sram=0, hbm=10_000, idx=400, rows=2, rr=3, cols=8, hstride=16, sstride=8)
    fmax = f | {"ra": 7}
    idx, table, s = bounds("GATHER", f | {"rr": 0}, fmax)
    assert idx[0].name == "idx" and (idx[1], idx[2]) == (400, 400 + 4 * (7 + 5))
    assert table[0].data_dependent and (table[1], table[2]) == (10_000, 10_000 + 16)
    assert s[0].write and (s[1], s[2]) == (0, 4 * 8 + 8)


_SIZE = st.integers(0, 40)


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from([d.name for d in INSTRUCTIONS if d.unit is not Unit.CTRL]),
       data=st.data())
def test_array_evaluation_matches_per_instruction_evaluation(op, data):
    d = BY_NAME[op]
    n = 3
    flags = {f.name: data.draw(st.integers(0, 1)) for f in d.fields if f.kind is Kind.FLAG}
    cols = {f.name: np.array(data.draw(st.lists(_SIZE, min_size=n, max_size=n)), dtype=np.float64)
            for f in d.fields if f.kind is not Kind.FLAG}
    vec = bounds(op, dict(cols, **flags), dict(cols, **flags), devices=3)
    for i in range(n):
        f = {k: int(v[i]) for k, v in cols.items()} | flags
        one = bounds(op, f, f, devices=3)
        assert [o.name for o, _, _ in one] == [o.name for o, _, _ in vec]
        for (o, lo, hi), (_, vlo, vhi) in zip(one, vec):
            assert (lo, hi) == (vlo[i], vhi[i])
