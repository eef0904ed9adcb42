"""One point of a sweep: build the design, compile, time, cost, size. A pure function of the
point (a Dask task), that never raises for a bad point: it returns a row with a status.

Row statuses:

``ok``
    compiled, simulated, costed;
``invalid``
    the configuration (or model, lengths) is not valid: ``reason`` is the one-line error;
``infeasible``
    valid, but it does not compile onto the design (e.g. the model does not fit the HBM);
``unsupported``
    something this fpgpt cannot evaluate yet (e.g. several cards without multi-device timing);
``failed``
    an unexpected error inside the task (or its worker lost more times than Dask allows).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from typing import Any

from .. import __version__
from ..config import ConfigError, HardwareConfig

__all__ = ["STATUSES", "NUMERIC_COLUMNS", "BOOL_COLUMNS", "point_key", "build_config",
           "design_columns", "evaluate_point", "failed_row", "one_line"]

STATUSES = ("ok", "invalid", "infeasible", "unsupported", "failed")

#: The numeric result columns a spec's constraints and objectives may name (besides the
#: axes and every numeric HardwareConfig field); tests/test_sweep.py checks an ok row has
#: no other numeric column.
NUMERIC_COLUMNS = (
    "ms_per_token", "ttft_ms", "tokens_per_s", "total_ms", "hbm_floor_ms", "pct_hbm_floor",
    "hbm_bw_util", "util_dma", "util_mpu", "util_vpu", "util_net", "link_util",
    "mpu_macs_per_cycle", "hbm_peak_gb_per_s", "line_elements", "stripe_elements",
    "lut", "ff", "dsp", "bram36", "uram", "lut_pct", "ff_pct", "dsp_pct", "bram_pct", "uram_pct",
    "tokens_per_j", "tokens_per_j_lo", "tokens_per_j_hi", "j_per_token", "decode_power_w",
    "energy_events", "fmax_mhz", "fmax_supported_clock_mhz", "fmax_blocks_timed",
    "wall_s", "cpu_s")

#: The true/false result columns a constraint may require (``clock_within_fmax = true``).
BOOL_COLUMNS = ("stripe_path", "clock_within_fmax")


def _hw_overrides(point: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in point.items() if k not in ("model", "prompt_len", "gen_len")}


def build_config(base: HardwareConfig, point: dict[str, Any]) -> HardwareConfig:
    """The point's design: ``base`` with the point's HardwareConfig fields changed
    (:class:`~fpgpt.config.ConfigError` when the result is invalid)."""
    ov = _hw_overrides(point)
    hw = base.replace(**ov) if ov else base
    name = f"{base.name}-sweep"
    return hw.replace(name=name) if hw.name != name else hw


def point_key(base: HardwareConfig, point: dict[str, Any], resources: str) -> str:
    """Hash of the point's full configuration and fpgpt's version: what keys its result."""
    try:
        hw = build_config(base, point).to_dict()
    except ConfigError:
        hw = {"base": base.to_dict(), "overrides": _hw_overrides(point)}
    for d in (hw, hw.get("base", {})):
        for k in ("name", "description", "sources"):
            d.pop(k, None)
    doc = {"hw": hw, "model": point.get("model"), "prompt_len": point.get("prompt_len"),
           "gen_len": point.get("gen_len"), "resources": resources, "fpgpt": __version__}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]


def one_line(e: BaseException) -> str:
    """``e`` as a row's reason: its type and the first line of its message."""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0]}" if msg else type(e).__name__


def failed_row(task: dict[str, Any], status: str, reason: str) -> dict[str, Any]:
    return {"key": task["key"], **task["point"], "status": status, "reason": reason,
            "fpgpt_version": __version__}


def evaluate_point(task: dict[str, Any]) -> dict[str, Any]:
    """Evaluate one point (``task``: ``key``, ``point``, ``base`` (a HardwareConfig dict),
    ``resources`` ("model" or "synth"), ``synth_dir``: the Yosys work folder, whose ``cache``
    the Fmax is looked up in without --synth, or None). Returns its row."""
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        row = _evaluate(task)
    except Exception as e:  # noqa: BLE001 - a point that raises is a failed row, never a crash
        row = failed_row(task, "failed", one_line(e))
    row["wall_s"] = round(time.perf_counter() - t0, 3)
    row["cpu_s"] = round(time.process_time() - c0, 3)      # this process's CPU: load-independent
    row["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    return row


def _evaluate(task: dict[str, Any]) -> dict[str, Any]:
    from ..models import ModelError, get_spec
    point = task["point"]
    if "_raise" in point:                     # fault injection for the tests
        raise RuntimeError(str(point["_raise"]))
    base = HardwareConfig.from_dict(task["base"], origin="sweep base")
    try:
        hw = build_config(base, point)
    except ConfigError as e:
        return failed_row(task, "invalid", str(e).splitlines()[0])
    try:
        spec = get_spec(point["model"])
    except ModelError as e:
        return failed_row(task, "invalid", str(e).splitlines()[0])
    pl, gl = point["prompt_len"], point["gen_len"]
    if not all(isinstance(x, int) and x >= 1 for x in (pl, gl)):
        return failed_row(task, "invalid", f"prompt_len and gen_len must be integers >= 1, "
                                           f"not {pl!r}, {gl!r}")
    if pl + gl - 1 > spec.n_ctx:
        return failed_row(task, "invalid", f"prompt {pl} + {gl} generated tokens need "
                                           f"{pl + gl - 1} positions; {spec.name} has {spec.n_ctx}")
    row = {"key": task["key"], **point, "status": "ok", "reason": "",
           "artifact": hw.artifact_name, "fpgpt_version": __version__, **design_columns(hw)}
    timing = _timing(spec, hw, pl, gl, row)
    if timing is None:
        return row
    row.update(_resources(hw, task))
    row.update(_energy(timing, hw, spec))
    if task.get("resources") != "synth":          # --synth: the report's own, set above
        row.update(_fmax_lookup(hw, task))
    return row


def _fmax_lookup(hw: HardwareConfig, task: dict[str, Any]) -> dict[str, Any]:
    """The Fmax columns from the synthesis cache (fpgpt/sweep/clock.py); a lookup that fails
    is a stated reason, never a failed point."""
    from .clock import design_fmax, not_estimated
    work = task.get("synth_dir")
    try:
        return design_fmax(hw, None if work is None else f"{work}/cache")
    except Exception as e:  # noqa: BLE001 - the point is still timed, costed and sized
        return not_estimated(f"Fmax lookup failed: {one_line(e)}")


def design_columns(hw: HardwareConfig) -> dict[str, Any]:
    """Figures of the design itself (no simulation): peak rates and whether the DMA can use its
    stripe path (a stripe of channels x port_bits at most one scratchpad line: fpgpt.geometry;
    off it, every transfer takes the element path, orders of magnitude slower)."""
    from ..geometry import line_elements, stripe_elements, stripes_ok
    return {"mpu_macs_per_cycle": hw.mpu_macs_per_cycle,
            "hbm_peak_gb_per_s": hw.hbm_peak_bytes_per_s / 1e9,
            "line_elements": line_elements(hw), "stripe_elements": stripe_elements(hw),
            "stripe_path": stripes_ok(hw)}


def _timing(spec, hw: HardwareConfig, pl: int, gl: int, row: dict[str, Any]):
    from ..compiler import CompileError
    from ..sim.timing import simulate
    extra: dict[str, Any] = {}
    try:
        if hw.devices == 1:
            from ..compiler import compile_model
            program = compile_model(spec, hw, prompt_len=pl, verify=False)
        else:
            try:
                from ..compiler import compile_devices
                from ..sim.system import simulate_system
            except ImportError as e:
                row.update(status="unsupported", reason=f"devices = {hw.devices}: this fpgpt "
                                                        f"cannot time a ring of cards ({e})")
                return None
            programs = compile_devices(spec, hw, prompt_len=pl, verify=False)
    except CompileError as e:
        row.update(status="infeasible", reason=str(e).splitlines()[0])
        return None
    if hw.devices == 1:
        res = simulate(program, hw, prompt_len=pl, gen_len=gl)
    else:
        ring = simulate_system(programs, prompt_len=pl, gen_len=gl, hw=hw)
        res = ring.result
        extra["link_util"] = getattr(ring, "link_utilization", None)
    floor_ms = spec.weight_bytes_per_token() / (hw.hbm_peak_bytes_per_s * hw.devices) * 1e3
    u = res.unit_utilization
    row.update({
        "ms_per_token": res.ms_per_token, "ttft_ms": res.ttft_ms,
        "tokens_per_s": res.tokens_per_s, "total_ms": res.total_ms,
        "hbm_floor_ms": floor_ms,
        "pct_hbm_floor": 100.0 * floor_ms / res.ms_per_token if res.ms_per_token else None,
        "hbm_bw_util": res.hbm_bw_utilization,
        "util_dma": u.get("dma"), "util_mpu": u.get("mpu"), "util_vpu": u.get("vpu"),
        "util_net": u.get("net"), **extra,
    })
    return res


def _resources(hw: HardwareConfig, task: dict[str, Any]) -> dict[str, Any]:
    from .resources import PCT_COLUMNS, RESOURCE_COLUMNS
    if task.get("resources") == "synth":
        from .clock import fmax_columns_from_report
        rep = _synth(hw, task["synth_dir"])
        tot, cap = rep["total"], rep["capacity"]
        out = {"resources_source": "synth",
               "resources_note": "Yosys synth_xilinx per block, summed by instance count",
               **fmax_columns_from_report(rep.get("fmax"), hw, source="synthesis")}
    else:
        from .resources import estimate
        est = estimate(hw)
        tot, cap = est["total"], est["capacity"]
        out = {"resources_source": "model", "resources_note": est["note"],
               "resource_model": est["model"]}
    for col, r in RESOURCE_COLUMNS.items():
        out[col] = float(tot[r])
    for col, r in PCT_COLUMNS.items():
        out[col] = 100.0 * tot[r] / cap[r] if cap[r] else None
    return out


def _synth(hw: HardwareConfig, work: str) -> dict[str, Any]:
    """Real per-block synthesis; inside a Dask worker the blocks are tasks of their own."""
    from ..hw.synth import synth_report
    try:
        from distributed import get_worker, worker_client
        get_worker()
    except (ImportError, ValueError):
        return synth_report(hw, work, fmax=True)
    with worker_client() as client:          # secedes: the blocks run on the other threads/workers
        return synth_report(hw, work, client=client, fmax=True)


def _energy(res, hw: HardwareConfig, spec) -> dict[str, Any]:
    try:
        from ..energy import energy_of
    except ImportError as e:
        return {"tokens_per_j": None, "j_per_token": None,
                "energy_reason": f"fpgpt.energy is not importable here ({one_line(e)})"}
    try:
        e = energy_of(res, hw, spec=spec)
    except Exception as err:  # noqa: BLE001 - a missing energy figure is a stated reason
        return {"tokens_per_j": None, "j_per_token": None,
                "energy_reason": f"energy model failed: {one_line(err)}"}
    if e.decode is None:
        return {"tokens_per_j": None, "j_per_token": None,
                "energy_reason": "no decode stream (gen_len = 1)"}
    jpt, tpj = e.decode.j_per_token, e.decode.tokens_per_j
    return {"tokens_per_j": tpj.value, "tokens_per_j_lo": tpj.lo, "tokens_per_j_hi": tpj.hi,
            "j_per_token": jpt.value, "decode_power_w": e.decode.avg_power_w.value,
            "energy_events": e.decode.events, "energy_reason": ""}
