"""The whole core on a compiled GPT-2: the shipped ``micro`` model compiled for the ``tiny``
preset runs prefill and decode on the emitted Verilog (cocotb_program.py) through the host
protocol. Every HBM byte (KV caches, the generated tokens, everything else) must equal
fpgpt.sim's exact mode, every instruction of every unit must complete, and each stream's cycle
count must be within 2 % of the timing model's (issue #4). HBM is four AxiRams serving a beat
per cycle, the memory the tiny preset's timing model describes (64-bit ports at the core clock,
two cycles of latency); ``bench/bench_rtl_program.py --pauses`` runs the same with back-pressure.
The per-instruction comparison (start, duration, completion) is written to
build/rtl/core_reports/ (the bench prints it as a table).

The Verilator build is the one tests/rtl/test_hw_core.py makes (same top, same folder)."""

from __future__ import annotations

from program_case import make_case, run_and_check


def test_compiled_generation_on_the_core(tmp_path, rtl_build):
    run_and_check(make_case(model="micro", preset="tiny", prompt="de", new_tokens=3),
                  rtl_build, tmp_path, instructions=True)


def test_lm_head_argmax_by_chunks_on_the_core(tmp_path, rtl_build):
    """The shipped ``tiny`` model on one ``tiny`` core: its LM head comes in two chunks (240 and
    17 logits), the second's ARGMAX continuing the first's (``cont``: the VPU's lanes keep
    their best across the commands), so the token is picked as the LM head runs. Tokens, every
    HBM byte and the cycles (within 2 %) as for ``micro`` above."""
    run_and_check(make_case(model="tiny", preset="tiny", prompt="de", new_tokens=2),
                  rtl_build, tmp_path)
