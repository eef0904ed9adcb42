"""cocotb test module: a compiled GPT-2 generation on the Verilog core (see program_case.py).

The host (``Card`` in cocotb_core.py) loads the program image, writes the prompt-filled HBM
image, runs ``prefill`` and then ``decode`` with the program's registers, exactly as
fpgpt.sim.runner does, and reads ``tokens_out``. The stats file receives the HBM comparison, the
tokens, each run's cycle counter and per-unit completion counts and latest completion cycle, and the wall time.

Environment: PROGRAM_CASE (JSON from program_case.make_case), PROGRAM_STATS (output JSON),
PROGRAM_PROGRESS (optional: a file that receives a progress line now and then).
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np

from cocotb_core import Card
from fpgpt.config import load_preset


@cocotb.test()
async def generation_matches_simulator(dut):
    case = json.loads(open(os.environ["PROGRAM_CASE"]).read())
    hw = load_preset(case["preset"])
    image = np.frombuffer(bytes.fromhex(case["hbm_in"]), np.uint8)
    card = Card(dut, hw, len(image), bytes.fromhex(case["program"]),
                pauses=os.environ.get("PROGRAM_PAUSES", "1") == "1")
    await card.reset()
    card.hbm.write(image)
    runs = []
    for run in case["runs"]:
        await card.set_regs(run["regs"])
        t0 = time.perf_counter()
        counters = await card.run(case["entries"][run["stream"]],
                                  progress=os.environ.get("PROGRAM_PROGRESS"))
        runs.append({"stream": run["stream"], **counters, "wall_s": time.perf_counter() - t0})
    got = card.hbm.read()
    addr, n = case["tokens_out"]
    tokens = got[addr:addr + 4 * n].view("<i4").tolist()
    want = np.frombuffer(bytes.fromhex(case["hbm_out"]), np.uint8)
    diff = np.flatnonzero(got != want)
    with open(os.environ["PROGRAM_STATS"], "w") as fh:
        json.dump({"differ": int(diff.size), "first_diff": diff[:8].tolist(), "tokens": tokens,
                   "runs": runs}, fh)
    assert diff.size == 0, f"{diff.size} HBM bytes differ from fpgpt.sim, first at {diff[:8]}"
    assert tokens == case["tokens"], f"tokens {tokens} != simulator's {case['tokens']}"
