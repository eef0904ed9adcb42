"""The simulator: functional execution (numerics) and transaction-level timing of a Program."""

from .machine import Machine, SimError
from .executor import ExecStats, run_stream
from .runner import GenerationError, GenerationResult, generate
from .results import SimResult
from .timing import TimingError, simulate, time_stream
from .hazards import TimingHazard
from .trace import TraceRecorder

__all__ = ["Machine", "SimError", "ExecStats", "run_stream", "GenerationError",
           "GenerationResult", "generate", "SimResult", "TimingError", "TimingHazard", "simulate",
           "time_stream", "TraceRecorder"]
