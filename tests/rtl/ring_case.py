"""Ring cosimulation cases: what each card of a ring of cores (cocotb_ring.py) must reproduce.

:func:`net_case` is a hand-assembled program that exercises every NET instruction across the
ring (SEND/RECV in both directions, ALLGATHER, ALLREDUCE with partial beats and FP32 partial
sums); the HBM each card must end with is written here from the ISA's NET semantics
(fpgpt.isa.table, fpgpt.isa.numerics.allreduce_sum), independently of the RTL.

:func:`model_case` is a shipped model compiled for a ring (fpgpt.compiler.compile_devices), the
host protocol run on the system simulator in exact mode (fpgpt.sim.system: tokens and every
card's HBM afterwards) and timed by the system timing model (``simulate_system``: every card's
cycles per stream and its instructions' start and completion cycles).

:func:`run_cases` runs a list of per-card cases on the ring (fpgpt.hw.ring.run_ring) and returns
each card's stats. Shared by tests/rtl/test_hw_ring.py and bench/bench_rtl_ring.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fpgpt.config import load_preset
from fpgpt.isa import numerics
from fpgpt.isa.asm import assemble
from fpgpt.isa.encoding import Instr
from fpgpt.isa.program import Program

__all__ = ["net_case", "model_case", "with_load_stream", "run_cases", "ring_report", "HERE"]

HERE = Path(__file__).resolve().parent

#: Element counts of the NET program: not multiples of a 32-slot beat (partial last beats), an
#: ALLREDUCE of more than one beat of FP32 partial sums (16 per 512-bit beat).
P2P, GATHER, REDUCE = 37, 20, 45


def with_load_stream(program: Program) -> tuple[bytes, dict, int]:
    """The program image with one more stream, a lone ``HALT``, after the others: the host's
    first start runs it, which loads the whole image (fpgpt.hw.fetch) and does nothing else, so
    that every card then starts its real streams on the same edge whatever its program's
    length. Returns (image, entries, that stream's entry)."""
    streams = dict(program.streams)
    streams["_load"] = [Instr.make("HALT")]
    image, entries = Program(streams=streams).image()
    return image, entries, entries.pop("_load")


def net_case(cards: int, *, preset: str = "tiny", seed: int = 0) -> list[dict]:
    """One case per card: the NET program, each card's HBM before and after.

    HBM (bytes): ``P`` (P2P elements to send), ``G`` (``cards * GATHER``: the card's own chunk
    at its index, junk elsewhere, which the ALLGATHER must overwrite), ``R`` (REDUCE partial
    values), then the outputs ``Q0`` (received in the ring direction, from card ``d-1``), ``Q1``
    (received in the reverse direction, from ``d+1``), ``OG`` (the gathered buffer) and ``OR``
    (the reduced vector)."""
    D = cards
    rng = np.random.default_rng(seed)
    off = {}
    pos = 0
    for name, n in (("P", P2P), ("G", D * GATHER), ("R", REDUCE), ("Q0", P2P), ("Q1", P2P),
                    ("OG", D * GATHER), ("OR", REDUCE)):
        off[name] = pos
        pos += -(-2 * n // 64) * 64
    nbytes = pos
    s = {"P": 0, "G": 1024, "R": 2048, "Q0": 3072, "Q1": 4096}     # scratchpad elements

    def row(name, sram, n, src_hbm=None):
        h = off[name] if src_hbm is None else off[src_hbm]
        return f"sram={sram}, hbm={h}, rows=1, cols={n}, hstride={2 * n}, sstride={n}, batch=1"

    text = "\n".join([
        f"LOAD {row('P', s['P'], P2P)}",
        f"LOAD {row('G', s['G'], D * GATHER)}",
        f"LOAD {row('R', s['R'], REDUCE)}",
        f"SEND sram={s['P']}, count={P2P}, prev=0, wait.dma=1",
        f"RECV sram={s['Q0']}, count={P2P}, prev=0",
        f"SEND sram={s['P']}, count={P2P}, prev=1",
        f"RECV sram={s['Q1']}, count={P2P}, prev=1",
        f"ALLGATHER sram={s['G']}, count={GATHER}",
        f"ALLREDUCE sram={s['R']}, count={REDUCE}",
        f"STORE {row('Q0', s['Q0'], P2P)}, wait.net=1",
        f"STORE {row('Q1', s['Q1'], P2P)}",
        f"STORE {row('OG', s['G'], D * GATHER)}",
        f"STORE {row('OR', s['R'], REDUCE)}",
        "HALT",
    ])
    program = Program(streams={"main": assemble(text)})
    image, entries, load_entry = with_load_stream(program)

    def f16(n):
        return (rng.standard_normal(n) * 4).astype(np.float16)

    P = [f16(P2P) for _ in range(D)]
    G = [f16(D * GATHER) for _ in range(D)]          # junk except the card's own chunk
    R = [f16(REDUCE) for _ in range(D)]
    gathered = np.concatenate([G[c][c * GATHER:(c + 1) * GATHER] for c in range(D)])
    reduced = numerics.allreduce_sum(np.stack(R))
    cases = []
    for d in range(D):
        h_in = np.zeros(nbytes, np.uint8)
        for name, v in (("P", P[d]), ("G", G[d]), ("R", R[d])):
            h_in[off[name]:off[name] + v.nbytes] = v.view(np.uint8)
        h_out = h_in.copy()
        for name, v in (("Q0", P[(d - 1) % D]), ("Q1", P[(d + 1) % D]), ("OG", gathered),
                        ("OR", reduced)):
            h_out[off[name]:off[name] + v.nbytes] = np.asarray(v, np.float16).view(np.uint8)
        cases.append({"preset": preset, "kind": "net", "program": image.hex(),
                      "entries": entries, "load_entry": load_entry,
                      "hbm_in": h_in.tobytes().hex(), "hbm_out": h_out.tobytes().hex(),
                      "runs": [{"stream": "main", "regs": {}}], "asm": text})
    return cases


def run_cases(cases: list[dict], work: Path, build_dir: Path, *, latency: int | None = None,
              credits: int = 1024) -> tuple[list[dict], list]:
    """Run one case per card on a ring of ``len(cases)`` tiny cores; returns each card's stats
    (cocotb_ring.py) and the launcher's per-card wall times."""
    from fpgpt.hw.ring import link_latency_cycles, run_ring
    from fpgpt.hw.top import write_top

    hw = load_preset(cases[0]["preset"])
    v = write_top(hw, build_dir / "fpgpt_top.v", flat=True, probes=True)
    L = link_latency_cycles(hw) if latency is None else latency
    work.mkdir(parents=True, exist_ok=True)
    env = []
    for d, case in enumerate(cases):
        (work / f"case{d}.json").write_text(json.dumps(case))
        env.append({"RING_CASE": str(work / f"case{d}.json"),
                    "RING_STATS": str(work / f"stats{d}.json"),
                    "RING_LATENCY": str(L), "RING_CREDITS": str(credits),
                    "COCOTB_LOG_LEVEL": "WARNING"})
    res = run_ring([v], "fpgpt_top", "cocotb_ring", build_dir / "sim", cards=len(cases),
                   work_dir=work, test_dir=HERE, env=env, cxx_opt=False)
    stats = [json.loads((work / f"stats{d}.json").read_text()) for d in range(len(cases))]
    return stats, res


def _card_stamps(trace, hw, stream_starts_us: list[float]) -> list[tuple[dict, dict, dict]]:
    """Per stream (starting at the given trace times), per unit in order: the completion cycles,
    names and start cycles of one card's instructions, counted from the stream's start."""
    from fpgpt.sim.results import UNITS
    from fpgpt.sim.trace import TraceRecorder

    bounds = list(stream_starts_us) + [float("inf")]
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        ends: dict[str, list] = {u: [] for u in UNITS}
        for ev in trace.events:
            if ev.get("ph") == "X" and ev["tid"] < len(UNITS) and lo <= ev["ts"] < hi:
                done = TraceRecorder.completion_us(ev)
                ends[UNITS[ev["tid"]]].append((round((done - lo) * hw.clock_mhz, 6), ev["name"],
                                               round((ev["ts"] - lo) * hw.clock_mhz, 6)))
        ends = {u: sorted(v) for u, v in ends.items()}
        out.append(({u: [e[0] for e in v] for u, v in ends.items()},
                    {u: [e[1] for e in v] for u, v in ends.items()},
                    {u: [e[2] for e in v] for u, v in ends.items()}))
    return out


def model_case(model: str = "micro", preset: str = "tiny", prompt: str = "de",
               new_tokens: int = 3, devices: int = 2) -> list[dict]:
    """One case per card of a ``devices``-card ring: the card's Program, its HBM before (prompt
    written) and after the generation on fpgpt.sim.system (exact), the tokens, and per stream the
    system timing model's cycles and per-instruction stamps for this card."""
    from fpgpt.compiler import compile_devices
    from fpgpt.models import ByteTokenizer, load_model
    from fpgpt.sim.runner import REG_COUNT
    from fpgpt.sim.system import System, generate_system, simulate_system

    hw = load_preset(preset)
    ids = ByteTokenizer().encode(prompt)
    programs = compile_devices(load_model(model), hw, prompt_len=len(ids), devices=devices)
    system = System(programs)
    res = generate_system(programs, ids, new_tokens, system=system)
    # generate_system wrote the prompt into each card's HBM first; the input image is that
    hbm_out = system.hbm_images()
    fresh = System(programs)
    for p, m in zip(fresh.programs, fresh.machines):
        m.write_array(p.regions["tokens_in"].addr, np.asarray(ids), np.dtype("<i4"))
    hbm_in = fresh.hbm_images()
    timed = simulate_system(programs, prompt_len=len(ids), gen_len=new_tokens, trace=True)
    streams = ["prefill"] + (["decode"] if new_tokens > 1 else [])
    starts_us = [0.0] + ([timed.result.prefill.cycles / hw.clock_mhz] if new_tokens > 1 else [])
    cases = []
    for d, p in enumerate(programs):
        image, entries, load_entry = with_load_stream(p)
        stamps = _card_stamps(timed.traces[d], hw, starts_us)
        runs = []
        for i, name in enumerate(streams):
            regs = {int(r): int(v) for r, v in p.registers.get(name, {}).items()}
            if name == "decode":
                regs[REG_COUNT] = new_tokens - 1
            card = getattr(timed.cards[d], name)
            runs.append({"stream": name, "regs": regs, "model_cycles": card.cycles,
                         "model_stamps": stamps[i][0], "model_names": stamps[i][1],
                         "model_starts": stamps[i][2]})
        out = p.regions["tokens_out"]
        cases.append({"preset": preset, "kind": "model", "model": model, "card": d,
                      "devices": devices, "prompt": ids, "tokens": res.tokens,
                      "tokens_out": [out.addr, new_tokens], "program": image.hex(),
                      "entries": entries, "load_entry": load_entry,
                      "hbm_in": hbm_in[d].hex(), "hbm_out": hbm_out[d].hex(), "runs": runs,
                      "instructions": {s: len(p.stream(s)) for s in p.streams}})
    return cases


def ring_report(cases: list[dict], stats: list[dict]) -> dict:
    """Per card: the unit and stream rows (program_case.compare: RTL vs the system timing model),
    every instruction's start and completion (program_case.per_instruction), and per stream the
    NET unit's busy cycles on both sides (``net``: the sum of the NET instructions' durations)
    with the stream's cycles less them (``rest_diff_pct``: how far RTL and model agree on
    everything but the NET unit's own time)."""
    from program_case import compare, per_instruction

    cards = []
    for d, (c, s) in enumerate(zip(cases, stats)):
        instrs = per_instruction(c, s)
        streams = []
        for run, got in zip(c["runs"], s["runs"]):
            net = [r for r in instrs if r["stream"] == run["stream"] and r["unit"] == "net"
                   and r["rtl_start"] is not None]
            net_rtl = sum(r["rtl"] - r["rtl_start"] for r in net)
            net_model = sum(r["model"] - r["model_start"] for r in net)
            rest_rtl, rest_model = got["cycles"] - net_rtl, run["model_cycles"] - net_model
            streams.append({"stream": run["stream"], "rtl": got["cycles"],
                            "model": run["model_cycles"],
                            "diff_pct": 100.0 * (got["cycles"] - run["model_cycles"])
                            / run["model_cycles"],
                            "net_rtl": net_rtl, "net_model": net_model,
                            "rest_diff_pct": 100.0 * (rest_rtl - rest_model) / rest_model})
        cards.append({"card": d, "rows": compare(c, s), "streams": streams,
                      "instructions": instrs, "runs": s["runs"], "beats": s["beats"],
                      "differ": s["differ"], "tokens": s["tokens"]})
    return {"cards": cards}
