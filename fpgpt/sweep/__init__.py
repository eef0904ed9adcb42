"""Design-space sweeps (docs/sweep.md): a spec's points compiled, simulated, costed and sized
as Dask tasks, results written point by point, the Pareto front marked.

>>> from fpgpt.sweep import load_spec, run_sweep                        # doctest: +SKIP
>>> run = run_sweep(load_spec("examples/sweep-u280.toml"), "build/sweep/u280")

:mod:`.spec` the TOML spec and its points; :mod:`.point` one point (a pure function, never
raises for a bad point); :mod:`.run` the Dask driver; :mod:`.store` per-point files, the table
and the Pareto front; :mod:`.resources` the fitted per-block resource model
(:mod:`.synth_data` its data); :mod:`.plots` the PNGs.
"""

from .point import evaluate_point, point_key
from .run import SweepRun, run_sweep, start_client
from .spec import SpecError, SweepSpec, load_spec

__all__ = ["SpecError", "SweepRun", "SweepSpec", "evaluate_point", "load_spec", "point_key",
           "run_sweep", "start_client"]
