"""Energy per token of a simulated design and GPU baselines (docs/energy.md).

:mod:`.model` turns a timing simulation's results and the design's ``[power]`` constants into
joules per token by component, with low-high ranges; :mod:`.gpu` models GPUs at batch 1,
calibrated on published measurements (constants in ``gpus.toml``); :mod:`.gpu_bench` measures a
real GPU when one is present (optional extra ``fpgpt[gpu]``); :mod:`.compare` puts them side by
side. Nothing here runs the simulator.
"""

from .model import (COMPONENTS, EnergyError, EnergyResult, Span, StreamEnergy, energy_of,
                    estimate_events, stream_energy)
from .gpu import GPUError, GPUEstimate, calibration, estimate, gpu_table, load_baseline, parse_gpu

__all__ = ["COMPONENTS", "EnergyError", "EnergyResult", "Span", "StreamEnergy", "energy_of",
           "estimate_events", "stream_energy", "GPUError", "GPUEstimate", "calibration",
           "estimate", "gpu_table", "load_baseline", "parse_gpu"]
