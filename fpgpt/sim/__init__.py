"""The simulator: functional execution (numerics) and transaction-level timing of a Program."""

from .machine import Machine, SimError
from .executor import ExecStats, run_stream
from .runner import GenerationError, GenerationResult, generate

__all__ = ["Machine", "SimError", "ExecStats", "run_stream", "GenerationError",
           "GenerationResult", "generate"]
