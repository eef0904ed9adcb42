"""Multi-card model parallelism: the partitioned compile and the N-card system's exact run
(docs/multi-device.md). The N-card tokens and KV caches equal the one-card run bit for bit."""

import numpy as np
import pytest

from fpgpt.compiler import CompileError, compile_devices, compile_model
from fpgpt.compiler.layout import plan_layout
from fpgpt.compiler.partition import shard, split
from fpgpt.config import ConfigError, load_preset
from fpgpt.models import ByteTokenizer, Reference, get_spec, load_model
from fpgpt.sim import generate
from fpgpt.sim.machine import F16
from fpgpt.sim.system import System, generate_system

PROMPT = "def f(x):"
NEW = 8


@pytest.fixture(scope="module")
def tiny_model():
    return load_model("tiny")


@pytest.fixture(scope="module")
def one_card(tiny_model):
    ids = ByteTokenizer().encode(PROMPT)
    hw = load_preset("tiny")
    program = compile_model(tiny_model, hw, prompt_len=len(ids))
    return ids, hw, generate(program, ids, NEW).tokens


def test_split_keeps_the_largest_share_and_aligns_the_parts():
    """partition.split: ceil(n/D) on every card but the last, which takes the rest (each part
    then starts at d·w, where ALLGATHER puts it), else as even as possible; the largest share,
    which sets the time, is ceil(n/D) either way, and no card is left without work."""
    assert split(25, 4) == ((0, 7), (7, 7), (14, 7), (21, 4))
    assert split(50257, 4) == ((0, 12565), (12565, 12565), (25130, 12565), (37695, 12562))
    assert split(25, 6) == ((0, 5), (5, 4), (9, 4), (13, 4), (17, 4), (21, 4))    # 5 x 5 = 25
    assert split(8, 8) == tuple((i, 1) for i in range(8))
    for n, d in ((25, 3), (25, 8), (1600, 6), (50257, 8), (6400, 7), (4, 3), (1024, 4)):
        parts = split(n, d)
        counts = [c for _, c in parts]
        assert sum(counts) == n and min(counts) >= 1 and max(counts) == -(-n // d)
        assert all(parts[i][0] + parts[i][1] == parts[i + 1][0] for i in range(d - 1))


def test_one_device_is_the_one_card_compile(tiny_model):
    hw = load_preset("tiny")
    [p] = compile_devices(tiny_model, hw, prompt_len=5, devices=1)
    q = compile_model(tiny_model, hw, prompt_len=5)
    assert p.streams == q.streams and p.segments == q.segments


def test_micro_two_cards_tokens_and_reference():
    w = load_model("micro")
    ids = ByteTokenizer().encode(PROMPT)
    programs = compile_devices(w, load_preset("tiny"), prompt_len=len(ids), devices=2)
    assert [p.meta["device"] for p in programs] == [0, 1]
    assert all(any(i.op == "ALLGATHER" for i in p.streams["decode"]) for p in programs)
    got = generate_system(programs, ids, NEW).tokens
    assert got == Reference(w, dtype="fp16").generate(ids, NEW)


def test_residual_adds_run_on_each_cards_slice_and_the_gather_fills_x(tiny_model):
    """After the projection and fc2, each card adds its own columns to the residual and the
    all-gather fills ``x`` (not ``h`` / ``attn`` for a full-width VADD on every card): decode
    in place, prefill through the staging."""
    hw = load_preset("tiny")
    d = tiny_model.spec.d_model
    for p in compile_devices(tiny_model, hw, prompt_len=9, devices=2):
        dec = [(i.op, dict(i.args), i.comment) for i in p.streams["decode"]]
        x = next(a["dst"] for op, a, c in dec if c == "embed")
        res = [j for j, (op, a, c) in enumerate(dec) if op == "VADD" and ".res" in c]
        assert len(res) == 2 * tiny_model.spec.n_layer
        for j in res:
            a = dec[j][1]
            assert a["cols"] == d // 2 and a["dst"] == x + p.meta["device"] * d // 2
            nxt = next(a for op, a, c in dec[j + 1:] if op == "ALLGATHER")
            assert nxt == {"sram": x, "count": d // 2}
        pre = [dict(i.args) for i in p.streams["prefill"] if i.op == "VADD" and ".res" in i.comment]
        assert pre and all(a["cols"] == d // 2 for a in pre)


def test_prefill_tile_goes_by_halves_on_a_ring(tiny_model):
    """A staged prefill tile (several rows on several cards) is attended by query halves: R6 =
    R1 + the second half's first row is the second half's mask offset and key count, each half
    has its Q K^T and softmax. Each half's P V, all-gather and projection go in two parts, the
    projections after both parts' gathers; the MLP's rows go as the first half in two parts and
    the second whole, gathered part by part. (The tokens and KV caches of these programs equal
    one card's: the test below.)"""
    hw = load_preset("tiny")
    rows, h0 = 9, 5
    for p in compile_devices(tiny_model, hw, prompt_len=rows, devices=2):
        pre = p.streams["prefill"]
        L = tiny_model.spec.n_layer
        addi = [i for i in pre if i.op == "ADDI" and i["rd"] == 6]
        assert len(addi) == L and all(i["rs"] == 1 and i["imm"] == h0 for i in addi)
        sm = [i for i in pre if i.op == "SOFTMAX"]
        assert len(sm) == 2 * L
        assert [(i["cols"], i["rc"]) for i in sm[:2]] == [(h0, 1), (rows - h0, 6)]
        qk = [i for i in pre if i.op == "MM" and i["mask"]]
        assert [(i["m"], i["n"], i["rn"]) for i in qk[:2]] == [(h0, h0, 1), (rows - h0, rows - h0, 6)]
        # gathers a layer: the attention's and the projection's in four parts, fc's and fc2's
        # in three (rows 0..2, 3..4, 5..8); and the logits' one
        assert sum(i.op == "ALLGATHER" for i in pre) == 14 * L + 1
        # the MPU's order in a layer: the QKV product's first half, the first half's Q K^T (its
        # softmax runs beside) the QKV product's second half, the second half's Q K^T, then
        # half by half its two parts' P V, then their projections; fc in three parts
        mm = [i.comment for i in pre if i.op == "MM" and i.comment.startswith("layer0.")]
        at = [c.split(":")[-1].strip() if "attn" in c
              else c.split("[")[0] + c[c.index("]") + 1:] for c in mm]
        order = ["layer0.qkv rows 0..4", "Q K^T rows 0..4", "layer0.qkv rows 5..8",
                 "Q K^T rows 5..8", "P V rows 0..2", "P V rows 3..4", "layer0.proj rows 0..2",
                 "layer0.proj rows 3..4", "P V rows 5..6", "P V rows 7..8",
                 "layer0.proj rows 5..6", "layer0.proj rows 7..8", "layer0.fc rows 0..2",
                 "layer0.fc rows 3..4", "layer0.fc rows 5..8"]
        assert list(dict.fromkeys(x for x in at if x in order)) == order


@pytest.mark.parametrize("devices", [2, 3, 4])
def test_tiny_tokens_and_kv_caches_equal_one_card(tiny_model, one_card, devices):
    ids, hw, want = one_card
    programs = compile_devices(tiny_model, hw, prompt_len=len(ids), devices=devices)
    system = System(programs)
    got = generate_system(programs, ids, NEW, system=system)
    assert got.tokens == want
    assert all(n == got.net["collectives"][0] and n > 0 for n in got.net["collectives"])
    # every card's KV cache holds its heads of the one-card cache, bit for bit
    one = compile_model(tiny_model, hw, prompt_len=len(ids))
    from fpgpt.sim import Machine
    from fpgpt.sim.executor import run_stream
    from fpgpt.sim.runner import REG_COUNT
    m = Machine.for_program(hw, one)
    m.write_array(one.regions["tokens_in"].addr, np.asarray(ids), np.int32)
    m.regs[1] = 0
    run_stream(m, one, "prefill")
    m.regs[REG_COUNT] = NEW - 1
    run_stream(m, one, "decode")
    spec = tiny_model.spec
    for layer in (0, spec.n_layer - 1):
        name = f"layer{layer}.k_cache"
        full = m.read_array(one.regions[name].addr, one.regions[name].nbytes // 2, F16)
        full = full.reshape(spec.n_head, spec.n_ctx, spec.d_head)
        parts = []
        for p, card in zip(programs, system.machines):
            r = p.regions[name]
            parts.append(card.read_array(r.addr, r.nbytes // 2, F16).reshape(r.shape))
        assert np.array_equal(np.concatenate(parts).view(np.uint16), full.view(np.uint16))


@pytest.mark.parametrize("devices", [2, 3])
def test_sliced_gelu_and_residual_in_pieces_equal_one_card(tiny_model, devices):
    """A decode row's GELU and residual add on each card's slice go in three pieces behind the
    fc and fc2 chunks (a small scratchpad: several chunks a card), as on one card; the tokens
    are the one-card ones (three cards: the slices uneven, staged)."""
    ids = ByteTokenizer().encode(PROMPT)
    hw = load_preset("tiny").replace(**{"buffers.sram_kib": 128})
    want = generate(compile_model(tiny_model, hw, prompt_len=len(ids)), ids, NEW).tokens
    programs = compile_devices(tiny_model, hw, prompt_len=len(ids), devices=devices)
    for p in programs:
        dec = [i.comment for i in p.streams["decode"] if i.comment.startswith("layer0.")]
        assert sum(c.startswith("layer0.gelu[") for c in dec) == 3
        assert sum(c.startswith("layer0.res2 on this card's slice[") for c in dec) == 3
    assert generate_system(programs, ids, NEW).tokens == want


def test_uneven_heads_xl_25_heads():
    spec = get_spec("gpt2-xl")
    for d in (2, 3, 4, 6, 8):
        heads = [shard(spec, d, i).n_head for i in range(d)]
        assert sum(heads) == 25 and max(heads) == -(-25 // d) and min(heads) >= 1
    hw = load_preset("u280")
    layouts = [plan_layout(spec, hw, shard(spec, 3, d)) for d in range(3)]
    assert [lay["layer0.k_cache"].shape[0] for lay in layouts] == [9, 9, 7]
    assert [lay["layer0.w_fc"].shape[0] for lay in layouts] == [2134, 2134, 2132]
    # each card holds its share of the weights: three cards hold about a third each
    one = plan_layout(spec, hw)
    assert max(lay.total_bytes for lay in layouts) < 0.4 * one.total_bytes


def test_decode_attention_is_staged_in_place(tiny_model, one_card):
    """A decode row's uneven heads are all-gathered in the attn buffer itself (buffers.
    attn_staged_in_place): the cards up to the first narrower one need no unpack, the later ones
    move down onto their columns (on XL's 7/6/6/6 heads the copy overlaps its source); the
    tokens are the one-card ones."""
    ids, hw, want = one_card
    programs = compile_devices(tiny_model, hw, prompt_len=len(ids), devices=3)  # heads 2, 1, 1
    for p in programs:
        dec = [i for i in p.streams["decode"] if i.comment.startswith("layer0.attn: ")]
        gather = [i for i in dec if i.op == "ALLGATHER"]
        moves = [i.comment.split(": ")[1] for i in dec if i.op == "VCOPY"]
        assert len(gather) == 1 and moves == ["card 2's slice -> attn"]
        (mv,) = [i for i in dec if i.op == "VCOPY"]
        assert gather[0]["sram"] < mv["dst"] < mv["a"] == gather[0]["sram"] + 2 * gather[0]["count"]
    assert generate_system(programs, ids, NEW).tokens == want


def test_xl_decode_gathers_every_slice_in_place():
    """GPT-2 XL on four cards (heads 7/7/7/4, vocabulary 12,565 x 3 + 12,562): a decode step's
    all-gathers land every slice at d·w of its own buffer, so nothing is unpacked (the one
    VCOPY is the arg-max's, which puts the cards' best logits side by side), and the logits are
    not gathered: the ring carries one 4-element record a card, and each card's ARGMAX covers
    its own slice only."""
    spec = get_spec("gpt2-xl")
    hw = load_preset("u280").replace(devices=4)
    for d, p in enumerate(compile_devices(spec, hw, prompt_len=8, verify=True)):
        dec = p.streams["decode"]
        assert [i.comment for i in dec if i.op == "VCOPY"] == [
            "argmax: the cards' logits side by side"]
        gathers = {i.comment.split(":")[0]: i["count"] for i in dec if i.op == "ALLGATHER"}
        assert gathers["layer0.attn"] == 7 * 64 and gathers["argmax"] == 4
        assert gathers["layer0.fc"] == 1600 and gathers["layer0.proj"] == 400
        # its own slice, 640 logits at a time as the LM head makes them (the last chunk what
        # is left), then the cards' best
        am = [(i["cols"], i["cont"]) for i in dec if i.op == "ARGMAX"]
        assert am == [(640, 0)] + [(640, 1)] * 18 + [(405 if d < 3 else 402, 1), (4, 0)], am


def _tied_lm_head(model, first: int, sign: float):
    """``model`` with every ``wte`` row ``±`` one row: ``-`` before row ``first``, ``+`` from
    it on (``sign`` flips both), so that every logit is ``±s`` and all rows from ``first`` on
    tie (the sign of ``-x·v`` is exactly that of ``x·v``'s negation in FP16 / FP32)."""
    from fpgpt.models.weights import GPT2Weights
    t = dict(model.tensors)
    v = t["wte"][3]
    wte = np.repeat(v[None, :], len(t["wte"]), axis=0) * sign
    wte[:first] *= -1
    t["wte"] = wte
    return GPT2Weights(model.spec, t)


def test_ring_argmax_breaks_ties_as_one_card(tiny_model):
    """Each card's best, then the ring's pick: with every logit from card 1's first row on tied
    at the largest value (tiny's 257 tokens on three cards: 86, 86, 85), the winner is card 1's
    first token, as the one-card ARGMAX's first index; with the signs flipped, token 0 (all of
    card 0's tie). The tokens on 2 and 3 cards equal the one-card ones either way."""
    ids = ByteTokenizer().encode(PROMPT)
    hw = load_preset("tiny")
    seen = set()
    for sign in (1.0, -1.0):
        model = _tied_lm_head(tiny_model, 86, sign)
        want = generate(compile_model(model, hw, prompt_len=len(ids)), ids, 3).tokens
        seen.update(want)
        for devices in (2, 3):
            programs = compile_devices(model, hw, prompt_len=len(ids), devices=devices)
            assert generate_system(programs, ids, 3).tokens == want
    assert 86 in seen                   # a tie between cards 1 and 2 that card 1 wins


def test_weight_chunks_pass_an_unpack_that_waits_longer():
    """schedule.hoist: a weight chunk may pass an all-gather's unpack in the DMA queue when the
    unpack waits for later instructions than the chunk on every unit. GPT-2 XL on 4 cards,
    prefill: fc2's chunks (slots freed by fc's products) go ahead of the second half of fc's
    unpack (which waits for that half's GELU and all-gather), not behind it; KV traffic stays a
    fence (the K load comes after the chunk before it, as LEAD_CHUNKS says)."""
    hw = load_preset("u280")
    card0 = compile_devices("gpt2-xl", hw, prompt_len=128, devices=4, verify=False)[0]
    dma = [i.comment for i in card0.streams["prefill"] if i.definition.unit.value == "dma"]
    unpack = dma.index("layer10.fc: gathered ffn rows 64..127")
    assert dma.index("layer10.fc2[80:160]") < unpack
    assert dma.index("layer10.fc2[320:400]") < unpack


@pytest.mark.parametrize("devices, match", [
    (0, "at least 1"), (-2, "at least 1"), (5, "more than the 4 attention heads"),
    (2.0, "must be an integer")])
def test_bad_device_counts(tiny_model, devices, match):
    with pytest.raises(CompileError, match=match):
        compile_devices(tiny_model, load_preset("tiny"), prompt_len=4, devices=devices)


def test_ring_without_links(tiny_model):
    hw = load_preset("tiny").replace(**{"link.count": 0})
    with pytest.raises(CompileError, match="no links"):
        compile_devices(tiny_model, hw, prompt_len=4, devices=2)
    with pytest.raises(ConfigError, match="needs ring links"):
        hw.replace(devices=2)


def test_fit_check_is_per_card():
    spec = get_spec("gpt2-xl")
    hw = load_preset("u280").replace(**{"hbm.capacity_mib": 2400})
    with pytest.raises(CompileError, match="more devices"):
        compile_devices(spec, hw, prompt_len=16, devices=1)
    assert plan_layout(spec, hw, shard(spec, 2, 0)).total_bytes <= hw.hbm.capacity_bytes
    small = load_preset("u280").replace(**{"hbm.capacity_mib": 300})
    with pytest.raises(CompileError, match="on 8 devices needs"):
        compile_devices(spec, small, prompt_len=16, devices=8)


# -- the ring in the timing model ------------------------------------------------------------
def test_one_card_system_timing_is_the_one_card_timing(tiny_model):
    from fpgpt.sim import simulate
    from fpgpt.sim.system import simulate_system
    hw = load_preset("tiny")
    programs = compile_devices(tiny_model, hw, prompt_len=6, devices=1)
    one = simulate(programs[0], hw, prompt_len=6, gen_len=4)
    ring = simulate_system(programs, prompt_len=6, gen_len=4)
    assert ring.result.cycles == one.cycles
    assert ring.link_bytes_per_token == 0 and ring.to_json()["devices"] == 1


def test_xl_step_collectives_obey_link_physics_and_the_hbm_floor():
    """Every collective of a compiled XL step on 2 cards: the bytes it moves over the link's
    payload bandwidth fit in the time the link is busy, which fits in the collective; the decode
    is no faster than the 4-card HBM floor."""
    from fpgpt.sim.system import simulate_system
    hw = load_preset("u280")
    programs = compile_devices("gpt2-xl", hw, prompt_len=2, devices=2, verify=False)
    r = simulate_system(programs, prompt_len=2, gen_len=3)
    hw2 = programs[0].meta["config"]
    rate = hw.link.gbps * 1e9 / 8 * (1 - hw.link.overhead)        # payload bytes / s
    cyc_s = 1 / (hw.clock_mhz * 1e6)
    # prefill's two rows are gathered half by half (8 a layer), then two decode steps (4 a layer)
    assert len(r.collectives) == (8 * 48 + 1) + 2 * (4 * 48 + 1)
    for c in r.collectives:
        assert c.link_bytes > 0
        assert c.link_bytes / rate <= c.link_busy * cyc_s * (1 + 1e-9)
        assert all(e - c.start >= c.link_busy for e in c.end)
        assert all(a <= c.start for a in c.arrive)
    assert hw2["devices"] == 2
    assert r.result.ms_per_token >= r.hbm_floor_ms()
    j = r.to_json()
    assert j["devices"] == 2 and len(j["ring_wait_share"]) == 2
    assert 0 < j["link_utilization"] < 1 and j["link_bytes_per_token"] > 0


def test_a_slower_card_delays_the_others_at_the_collectives(tiny_model):
    """Three cards share 4 heads 2/1/1: card 0 has more attention work, so it arrives last at
    the gather after attention and the others wait for it there; a NET instruction completes
    only once every card has arrived."""
    from fpgpt.sim.system import simulate_system
    programs = compile_devices(tiny_model.spec, load_preset("u280"), prompt_len=8, devices=3)
    r = simulate_system(programs, prompt_len=8, gen_len=4)
    att = [c for c in r.collectives if c.stream == "decode" and c.count == 2 * 32]
    assert att and all(c.arrive[0] == c.start and c.arrive[1] < c.start for c in att)
    waits = r.partner_wait_share()
    assert waits[0] < waits[1] and waits[1] > 0
    for c in r.collectives:
        assert min(c.end) >= c.start + c.link_busy


def test_send_recv_pairs_functional_and_timed():
    """A hand-written 2-card program: SEND/RECV both ways pair by direction, move the data, and
    each pair completes when both ends are there (a RECV waits for its SEND's card)."""
    from fpgpt.isa import Instr, Program
    from fpgpt.sim.system import simulate_system
    hw = load_preset("tiny").replace(devices=2)

    def prog(d, body):
        s = [Instr.make(op, **f) for op, f in body] + [Instr.make("HALT")]
        return Program(streams={"prefill": s, "decode": [Instr.make("HALT")]},
                       meta={"device": d, "devices": 2, "config": hw.to_dict()})
    p0 = prog(0, [("SEND", {"sram": 0, "count": 8}), ("RECV", {"sram": 16, "count": 8, "prev": 1})])
    p1 = prog(1, [("VADD", {"dst": 64, "a": 64, "b": 64, "rows": 1, "cols": 4000, "ldd": 4000,
                            "lda": 4000, "ldb": 4000}),
                  ("RECV", {"sram": 0, "count": 8, "waits": {"vpu": 1}}),
                  ("SEND", {"sram": 32, "count": 8, "prev": 1})])
    system = System([p0, p1])
    a, b = system.machines
    a.sram[:8] = np.arange(8)
    b.sram[32:40] = -np.arange(8)
    system.run_stream("prefill")
    assert list(b.sram[:8]) == list(range(8)) and list(a.sram[16:24]) == [-i for i in range(8)]
    r = simulate_system([p0, p1], prompt_len=1, gen_len=1)
    first, second = r.collectives
    assert first.cards == (0, 1) and second.cards == (1, 0)
    # card 1's RECV waits for its VADD (a few hundred cycles): card 0's SEND waits for it
    assert first.arrive[0] + 100 < first.arrive[1] == first.start
    assert second.start >= first.end[1]
    assert r.partner_wait_share("prefill")[0] > 0
