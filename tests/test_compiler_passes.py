"""Unit tests of the compiler's passes (fpgpt/compiler), each on small specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fpgpt.compiler import CompileError
from fpgpt.compiler.buffers import WEIGHT_SLOTS, plan_buffers
from fpgpt.compiler.codegen import codegen_stream
from fpgpt.compiler.ir import Graph, Op, OpKind, verify_graph
from fpgpt.compiler.layout import plan_layout
from fpgpt.compiler.partition import shard as make_shard
from fpgpt.compiler.lower import lower
from fpgpt.compiler.pipeline import PASSES, stream_regmax
from fpgpt.compiler.schedule import assign_waits, footprint, hoist, schedule
from fpgpt.compiler.tile import chunk_rows, tile_graph
from fpgpt.config import load_preset
from fpgpt.geometry import weight_stride
from fpgpt.isa import Instr
from fpgpt.models import ModelSpec, get_spec

ROOT = Path(__file__).resolve().parents[1]
SMALL = ModelSpec("t", n_layer=2, n_head=3, d_model=48, d_ff=200, vocab=101, n_ctx=32)


def test_pipeline_lists_the_passes_in_order():
    assert PASSES == ("lower", "partition", "layout", "buffers", "tile", "codegen", "schedule",
                      "emit")


# -- lower -----------------------------------------------------------------------------------
def test_lower_has_one_block_per_layer_and_verifies():
    g = lower(SMALL)
    verify_graph(g)
    kinds = [o.kind for o in g.body]
    assert kinds.count(OpKind.ATTENTION) == SMALL.n_layer
    assert kinds.count(OpKind.LINEAR) == 4 * SMALL.n_layer
    assert [o.kind for o in g.head][-2:] == [OpKind.LM_HEAD, OpKind.ARGMAX]


def test_verify_graph_names_the_bad_op():
    bad = Graph((Op(OpKind.LAYERNORM, "ln", 0, {"src": "x", "dst": "h", "gamma": "g", "beta": "b"}),), ())
    with pytest.raises(CompileError, match="'ln' reads buffer 'x' before"):
        verify_graph(bad)
    with pytest.raises(CompileError, match="lacks attribute 'dst'"):
        verify_graph(Graph((Op(OpKind.EMBED, "e"),), ()))


# -- tile ------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,k,slot,lanes", [(300, 48, 1000, 4), (7, 48, 10_000, 16), (100, 64, 64, 16),
                                            (50257, 1600, 1 << 20, 16)])
def test_chunks_cover_rows_once_whole_lanes_and_fit(n, k, slot, lanes):
    chunks = chunk_rows(n, k, slot, lanes)
    assert chunks[0][0] == 0
    assert sum(r for _, r in chunks) == n
    assert all(a + r == b for (a, r), (b, _) in zip(chunks, chunks[1:]))
    assert all(r * k <= slot for _, r in chunks)
    if slot // k >= lanes:
        assert all(r % lanes == 0 for _, r in chunks[:-1])


def test_uneven_last_chunk():
    assert chunk_rows(300, 48, 1000, 4) == [(r, 20) for r in range(0, 300, 20)]
    assert chunk_rows(70, 10, 320, 16) == [(0, 32), (32, 32), (64, 6)]


def test_chunks_are_whole_mpu_super_groups_where_they_fit():
    """lanes x super_group rows a chunk where that many fit, else lanes (tile.py): 1,344 rows of
    K = 1,600 at a 2,112 stride in 2 MiB slots (GPT-2 XL's QKV on card 0 of 4 before session 19's
    odd strides) in 480-row chunks, not 496 (31 lane groups, padded to 35 by the MPU); 6,400 at
    7,232 in 80-row chunks."""
    slot = 1 << 20
    assert chunk_rows(1344, 1600, slot, 16, 2112) == [(0, 496), (496, 496), (992, 352)]
    assert chunk_rows(1344, 1600, slot, 16, 2112, 5) == [(0, 480), (480, 480), (960, 384)]
    assert [r for _, r in chunk_rows(400, 6400, slot, 16, 7232, 5)] == [80] * 5
    assert chunk_rows(70, 10, 320, 16, None, 5) == [(0, 32), (32, 32), (64, 6)]  # < 80 fit
    hw = load_preset("u280")
    g = tile_graph(lower(get_spec("gpt2-xl")), hw, slot)
    qkv = next(op for op in g.ops if op.kind is OpKind.LINEAR)
    # K = 1,600 is 25 chunks, an odd count: its rows are 1,600 apart in the slot (weight_stride),
    # 655 fit, 640 taken
    assert weight_stride(1600, hw) == 1600 and {r for _, r in qkv["chunks"][:-1]} == {640}
    assert all(r % (hw.mpu.lanes * hw.mpu.acc_latency) == 0
               for op in g.ops if op.kind is OpKind.LINEAR for _, r in op["chunks"][:-1])


def test_weight_rows_of_an_odd_chunk_count_load_in_runs_of_whole_stripes():
    """GPT-2 XL's K = 1,600 on u280: dense rows (3,200 B, the matrix on a stripe), 1,600 apart
    in the slot, loaded 16 rows (25 stripes) a run, where one row a LOAD row touched 2 stripes
    (padded to 4,096 B) for 1.56 of data; medium's 1,024 (16 chunks, even) as before."""
    from fpgpt.compiler import compile_model
    from fpgpt.compiler.layout import plan_layout, row_pitch
    from fpgpt.geometry import stripe_elements, weight_run_rows
    hw = load_preset("u280")
    assert weight_run_rows(1600, hw) == 16 and row_pitch(1600, hw) == 3200
    assert weight_run_rows(1024, hw) == 0 and weight_run_rows(6400, hw) == 0
    stripe = 2 * stripe_elements(hw)
    lay = plan_layout(get_spec("gpt2-xl"), hw)
    assert all(lay[f"layer{i}.w_{w}"].addr % stripe == 0 for i in (0, 47) for w in ("qkv", "fc"))
    prog = compile_model(get_spec("gpt2-xl"), hw, prompt_len=8, verify=False)
    loads = [i for i in prog.streams["decode"] if i.op == "LOAD" and ".qkv[" in (i.comment or "")]
    f = dict(loads[0].args)
    assert (f["cols"], f["hstride"], f["sstride"]) == (16 * 1600, 16 * 3200, 16 * 1600)
    assert f["rows"] * 16 == 640 and f["hbm"] % stripe == 0
    # a chunk whose rows are not whole runs: the runs, then the rows left one a row (XL on 8
    # cards: 200 projection rows = 12 runs and 8 rows)
    from fpgpt.compiler import compile_devices
    card = compile_devices("gpt2-xl", hw, prompt_len=8, devices=8, verify=False)[1]
    proj = [dict(i.args) for i in card.streams["decode"]
            if i.op == "LOAD" and (i.comment or "").startswith("layer0.proj[")]
    assert [(f["rows"], f["cols"]) for f in proj] == [(12, 16 * 1600), (8, 1600)]
    assert proj[1]["sram"] == proj[0]["sram"] + 192 * 1600


def test_attention_staging_fits_gpt2_xl_in_one_group():
    """The scores' rows are ctx rounded to a chunk and 8 heads share a V^T staging row for a
    128-token prompt (one in decode), so XL's 25 heads are one prefill group on one u280."""
    from fpgpt.compiler.buffers import plan_buffers, scores_stride, vt_heads_per_row
    from fpgpt.compiler.layout import plan_layout
    hw = load_preset("u280")
    assert (scores_stride(128, hw), vt_heads_per_row(128, hw), vt_heads_per_row(1024, hw)) == \
        (128, 8, 1)
    spec = get_spec("gpt2-xl")
    vec = plan_layout(spec, hw).vec_len
    assert plan_buffers(spec, hw, "prefill", prompt_len=128, vec_len=vec).group == 25


def test_chunk_rows_rejects_a_slot_smaller_than_a_row():
    with pytest.raises(CompileError, match="cannot hold one row of 100"):
        chunk_rows(10, 100, 99, 4)


def test_tile_graph_sets_chunks_on_every_linear():
    hw = load_preset("tiny")
    g = tile_graph(lower(SMALL), hw, 1024)
    verify_graph(g)
    for op in g.ops:
        if op.kind in (OpKind.LINEAR, OpKind.LM_HEAD):
            assert sum(r for _, r in op["chunks"]) == op["n"]


# -- layout ----------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["tiny", "u280", "dfx"])
def test_layout_aligned_disjoint_and_spread_over_all_channels(preset):
    hw = load_preset(preset)
    spec = get_spec("tiny") if preset == "tiny" else get_spec("gpt2-medium")
    lay = plan_layout(spec, hw)
    regs = sorted(lay.regions.values(), key=lambda r: r.addr)
    assert all(r.addr % hw.hbm.interleave_bytes == 0 for r in regs)
    assert all(a.end <= b.addr for a, b in zip(regs, regs[1:]))
    assert lay.total_bytes <= hw.hbm.capacity_bytes
    w = lay["layer0.w_fc"]
    assert w.shape == (spec.d_ff, spec.d_model)       # stored transposed, [N, K]
    # the first weight chunk (one contiguous transfer) touches every pseudo-channel
    n = chunk_rows(spec.d_ff, spec.d_model, plan_buffers(spec, hw, "decode", prompt_len=8,
                                                         vec_len=lay.vec_len).slot_elems,
                   hw.mpu.lanes)[0][1]
    first, last = w.addr, w.addr + 2 * n * spec.d_model
    gran = hw.hbm.interleave_bytes
    channels = {(a // gran) % hw.hbm.channels for a in range(first, last, gran)}
    assert channels == set(range(hw.hbm.channels))


def test_weight_rows_pad_to_whole_stripes_where_that_loads_them_faster():
    """layout.row_pitch: a row that is not a whole number of DMA stripes (2 KiB on u280) is
    padded to whole stripes when its stripe count falls more than its busiest channel's beats
    rise: GPT-2 small's 1,536-byte rows at 175 MHz; medium's rows are whole stripes; large's
    2,560 touch as many stripes either way; XL's 3,200 are loaded in runs of whole stripes."""
    from fpgpt.compiler.layout import row_cycles, row_pitch
    from fpgpt.config import load_config
    u280 = load_preset("u280")
    what_if = load_config(str(ROOT / "examples" / "u280-300mhz.toml"))
    # docs/compiler.md's table: (stripes, busiest channel's cycles) a row, dense and padded
    for k, hw, want in ((1600, u280, ((2.5, 1.32), (2, 1.69))),
                        (1600, what_if, ((2.5, 2.27), (2, 2.90))),
                        (768, u280, ((1.5, 0.64), (1, 0.85))),
                        (1280, u280, ((2, 1.06), (2, 1.69)))):
        got = row_cycles(k, hw)
        assert [[round(x, 2) for x in pair] for pair in got] == [list(p) for p in want], k
    # XL's 1,600 (25 chunks, odd) stays dense since session 19: loaded in runs of 16 rows
    # (weight_run_rows), 1.5625 stripes a row, fewer than padded rows' 2
    assert row_pitch(1600, u280) == 3200 and row_pitch(6400, u280) == 12800
    assert row_pitch(1024, u280) == 2048 and row_pitch(4096, u280) == 8192
    assert row_pitch(1280, u280) == 2560 and row_pitch(768, u280) == 2048
    assert row_pitch(1600, what_if) == 3200
    lay = plan_layout(get_spec("gpt2-xl"), u280)
    w, s = lay["layer0.w_qkv"], 2 * u280.hbm.channels * u280.hbm.port_bits // 16
    assert lay.pitch("layer0.w_qkv") == 3200 and w.nbytes == 4800 * 3200 and w.addr % s == 0
    assert lay.pitch("layer0.w_fc2") == 2 * 6400 and lay.pitch("wte") == 3200
    assert plan_layout(get_spec("gpt2"), u280).pitch("layer0.w_qkv") == 2048
    assert lay.pitch("wpe") == 3200 and "wpe" not in lay.pitches    # read by rows, not an MM's
    regs = sorted(lay.regions.values(), key=lambda r: r.addr)
    assert all(a.end <= b.addr for a, b in zip(regs, regs[1:]))


def test_padded_rows_fall_back_to_dense_when_they_do_not_fit():
    spec = ModelSpec("pad", n_layer=4, n_head=5, d_model=200, d_ff=808, vocab=3000, n_ctx=64)
    u280 = load_preset("u280")
    dense = plan_layout(spec, u280.replace(**{"hbm.capacity_mib": 8192}))
    assert dense.pitches                                   # 400-byte rows: one stripe each
    from fpgpt.compiler.layout import _place
    need = _place(spec, u280, make_shard(spec, 1, 0), pad=False).total_bytes
    small = u280.replace(**{"hbm.capacity_mib": -(-need // 2**20)})
    assert dense.total_bytes > small.hbm.capacity_bytes    # the padded layout would not fit
    lay = plan_layout(spec, small)
    assert not lay.pitches and lay.total_bytes == need


def test_layout_capacity_error_names_the_sizes():
    with pytest.raises(CompileError, match=r"gpt2-xl needs 3\.\d+ GB of HBM .* but tiny has 0\.07 GB"):
        plan_layout(get_spec("gpt2-xl"), load_preset("tiny"))


# -- buffers ---------------------------------------------------------------------------------
def _overlap(plan, a, b):
    return plan.addr[a] < plan.addr[b] + plan.size[b] and plan.addr[b] < plan.addr[a] + plan.size[a]


def test_buffers_fit_and_live_buffers_do_not_overlap():
    hw = load_preset("tiny")
    lay = plan_layout(SMALL, hw)
    for stream in ("prefill", "decode"):
        p = plan_buffers(SMALL, hw, stream, prompt_len=20, vec_len=lay.vec_len)
        assert p.used_elems <= hw.buffers.sram_elements
        always = ["x", "h", "params0", "params1"] + [f"slot{i}" for i in range(WEIGHT_SLOTS)]
        for a in always + ["qkv", "kst", "vst", "scores", "ffn"]:
            for b in always:
                if a != b:
                    assert not _overlap(p, a, b), (stream, a, b)
        assert not _overlap(p, "qkv", "scores") and not _overlap(p, "kst", "vst")


def test_buffers_split_heads_then_rows_when_the_scratchpad_is_small():
    spec = ModelSpec("s", n_layer=1, n_head=8, d_model=128, d_ff=512, vocab=50, n_ctx=1024)
    hw = load_preset("tiny").replace(**{"buffers.sram_kib": 160})
    lay = plan_layout(spec, load_preset("u280"))
    dec = plan_buffers(spec, hw, "decode", prompt_len=300, vec_len=lay.vec_len)
    assert dec.group < spec.n_head
    pre = plan_buffers(spec, hw, "prefill", prompt_len=300, vec_len=lay.vec_len)
    assert len(pre.tiles) > 1 and sum(r for _, r in pre.tiles) == 300


def test_buffer_error_names_buffer_sizes_and_sram_kib():
    hw = load_preset("tiny").replace(**{"buffers.sram_kib": 64})
    spec = get_spec("gpt2-xl")
    with pytest.raises(CompileError, match=r"gpt2-xl \(decode\) does not fit.*largest buffer '\w+': [\d.]+ KiB.*buffers\.sram_kib = 64"):
        plan_buffers(spec, hw, "decode", prompt_len=8, vec_len=100)


# -- schedule --------------------------------------------------------------------------------
def test_footprint_of_register_sized_load():
    ins = Instr.make("LOAD", sram=100, hbm=1000, rows=1, rr=1, cols=8, hstride=16, sstride=8, batch=2,
                     hbatch=4096, sbatch=64)
    (h,), (s,) = footprint(ins, {1: 3})
    assert s == ("S", 100, 100 + 64 + 3 * 8 + 8)
    assert h == ("H", 1000, 1000 + 4096 + 3 * 16 + 16)


def test_waits_cover_raw_war_waw_and_count_per_unit():
    mk = Instr.make
    prog = [mk("LOAD", sram=0, hbm=0, rows=1, cols=16, hstride=32, sstride=16, batch=1),      # dma 0
            mk("LOAD", sram=100, hbm=0, rows=1, cols=16, hstride=32, sstride=16, batch=1),    # dma 1
            mk("VADD", dst=200, a=0, b=100, rows=1, cols=16),                                 # RAW on both
            mk("LOAD", sram=0, hbm=64, rows=1, cols=16, hstride=32, sstride=16, batch=1),     # WAR on VADD
            mk("GELU", dst=200, a=300, rows=1, cols=16)]                                      # WAW on VADD
    out = assign_waits(prog, {}, [])
    assert out[2].wait_map["dma"] == 1          # the latest of the two loads: 1 back
    assert out[3].wait_map["vpu"] == 1
    assert out[3].wait_map["dma"] == 2          # WAW on the first LOAD (same unit, still explicit)
    assert out[4].wait_map["vpu"] == 1
    assert out[0].waits == (0, 0, 0, 0) and out[1].waits == (0, 0, 0, 0)


def test_waits_saturate_at_15():
    mk = Instr.make
    prog = [mk("LOAD", sram=0, hbm=0, rows=1, cols=4, hstride=8, sstride=4, batch=1)]
    prog += [mk("LOAD", sram=100 + 8 * i, hbm=0, rows=1, cols=4, hstride=8, sstride=4, batch=1)
             for i in range(20)]
    prog.append(mk("GELU", dst=1000, a=0, rows=1, cols=4))
    assert assign_waits(prog, {}, [])[-1].wait_map["dma"] == 15


def _decode_items(spec, hwname="tiny", prompt_len=8):
    hw = load_preset(hwname)
    lay = plan_layout(spec, hw)
    plan = plan_buffers(spec, hw, "decode", prompt_len=prompt_len, vec_len=lay.vec_len)
    g = tile_graph(lower(spec), hw, plan.slot_elems)
    return codegen_stream("decode", g, spec, lay, plan, hw), lay, plan


def test_hoist_moves_weight_loads_ahead_but_not_above_sync_or_their_slot_reader():
    items, lay, plan = _decode_items(SMALL)
    regmax = stream_regmax(SMALL, "decode", plan.tiles)
    ordered = hoist(items, regmax, lay.writable)
    assert sorted(map(id, ordered)) == sorted(map(id, items))
    assert ordered[0].instr.op == "SYNC"
    pos = {id(it): i for i, it in enumerate(ordered)}
    loads = [it for it in items if it.chunk is not None]
    moved = sum(pos[id(it)] < items.index(it) for it in loads)
    assert moved > len(loads) // 2
    # each chunk LOAD is after the MM that used its slot WEIGHT_SLOTS chunks before
    mms = [it for it in items if it.instr.op == "MM" and it.instr["b"] in plan.slots]
    for c, ld in enumerate(loads):
        if c >= WEIGHT_SLOTS:
            assert pos[id(ld)] > pos[id(mms[c - WEIGHT_SLOTS])]
        assert pos[id(ld)] < pos[id(mms[c])]


def test_schedule_retargets_the_loop_branch_to_sync():
    items, lay, plan = _decode_items(SMALL)
    out = schedule(items, stream_regmax(SMALL, "decode", plan.tiles), lay.writable)
    bnz = [i for i in out if i.op == "BNZ"]
    assert len(bnz) == 1 and out[bnz[0]["target"]].op == "SYNC"
    assert out[-1].op == "HALT"
