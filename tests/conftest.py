"""Suite-wide settings.

Hypothesis: no per-example deadline and no "too slow" health check. The suite runs on parallel
workers (pytest-xdist) on a 2-core machine shared with Verilator builds, where an example's
wall time says nothing about the code under test; the properties themselves are unchanged.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("fpgpt", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fpgpt")
