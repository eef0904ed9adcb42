"""Speed of the golden numerics' matrix products: exact (the RTL's adder tree) vs fast (BLAS).

Run: ``.venv/bin/python bench/bench_numerics.py``. Median of 5 runs per shape.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from fpgpt.isa.numerics import mpu_matmul

SHAPES = [(1, 256, 1024), (64, 256, 1024), (1, 1024, 4096), (128, 1024, 1024)]


def median_ms(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def main() -> int:
    rng = np.random.default_rng(0)
    print(f"{'M x K x N':>18} {'width':>5} {'exact ms':>9} {'fast ms':>8}")
    for m, k, n in SHAPES:
        a = rng.standard_normal((m, k)).astype(np.float16)
        b = rng.standard_normal((n, k)).astype(np.float16)
        for w in (8, 64):
            ex = median_ms(lambda: mpu_matmul(a, b, width=w, mode="exact"))
            fa = median_ms(lambda: mpu_matmul(a, b, width=w, mode="fast"))
            print(f"{m:>5} x {k:>4} x {n:>4} {w:>5} {ex:>9.2f} {fa:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
