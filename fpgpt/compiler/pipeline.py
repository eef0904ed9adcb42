"""The compiler pipeline: named passes, in order, with the verifiers before and after.

    lower      GPT-2 spec -> op IR                       (lower.py)
    partition  one card's share of the IR                (partition.py)
    layout     HBM regions (+ memory image)              (layout.py)
    buffers    scratchpad plan per stream                (buffers.py)
    tile       linears -> weight chunks                  (tile.py)
    codegen    IR -> instructions, natural order         (codegen.py)
    schedule   hoist weight loads, wait counts           (schedule.py)
    emit       Program                                   (emit.py)

A timing-only compile (no weights) is cached by :func:`run_pipeline`: in this process and, for
a fresh process such as ``fpgpt simulate``, as a file under ``build/compile-cache/``
(``FPGPT_COMPILE_CACHE`` names another folder, or ``off``). The key hashes every fpgpt source
file, the model spec, the whole HardwareConfig, the prompt length, the card and whether the
verifier ran, so a cached Program is never stale: any change to the code or the inputs misses.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import struct
from pathlib import Path

from fpgpt.config import HardwareConfig
from fpgpt.isa import Instr, Program
from fpgpt.isa import ISAError
from fpgpt.isa.verify import ProgramError, verify_stream
from fpgpt.models import ModelSpec

from .buffers import plan_buffers
from .codegen import COUNT, KPOS, OUT, POS, QPOS, TOKEN, WIN, codegen_stream
from .emit import emit_program
from .errors import CompileError
from .ir import verify_graph
from .layout import memory_image, plan_layout
from .lower import lower
from .partition import partition_graph, shard
from .schedule import schedule
from .tile import tile_graph

__all__ = ["PASSES", "run_pipeline", "stream_regmax", "cache_dir", "CACHE_ENV"]

PASSES = ("lower", "partition", "layout", "buffers", "tile", "codegen", "schedule", "emit")
STREAMS = ("prefill", "decode")


def stream_regmax(spec: ModelSpec, stream: str, tiles: list[tuple[int, int]],
                  devices: int = 1) -> dict[int, int]:
    """The largest value each register holds while ``stream`` runs (for footprints and checks)
    on a ring of ``devices`` cards (``WIN``: the ring arg-max's winning card)."""
    win = {WIN: devices - 1} if devices > 1 else {}
    if stream == "prefill":
        return {POS: tiles[-1][0], TOKEN: spec.vocab - 1, OUT: 1, KPOS: spec.d_head * tiles[-1][0],
                QPOS: tiles[-1][0] + max(-(-rows // 2) for _, rows in tiles), **win}
    return {POS: spec.n_ctx - 1, TOKEN: spec.vocab - 1, OUT: spec.n_ctx - 1, COUNT: spec.n_ctx,
            KPOS: spec.d_head * (spec.n_ctx - 1), **win}


def run_pipeline(spec: ModelSpec, hw: HardwareConfig, *, prompt_len: int, weights=None,
                 verify: bool = True, device: int = 0) -> Program:
    """Card ``device``'s Program of ``spec`` on a ring of ``hw.devices`` cards (one card: the
    whole model). Without weights the result is cached (module docstring): every call returns
    a Program of its own, equal to what the passes give (instruction comments included)."""
    if weights is not None:
        return _run_passes(spec, hw, prompt_len=prompt_len, weights=weights, verify=verify,
                           device=device)
    folder = cache_dir()
    if folder is None:
        return _run_passes(spec, hw, prompt_len=prompt_len, verify=verify, device=device)
    key = _cache_key(spec, hw, prompt_len, verify, device)
    blob = _MEMORY.get(key)
    path = Path(folder) / f"{key}.fpc"
    if blob is None:
        try:
            blob = path.read_bytes()
        except OSError:
            blob = None
    if blob is not None:
        try:
            program = _unpack(blob)
        except (ISAError, ValueError, KeyError, TypeError, EOFError, struct.error):
            program = None                          # a damaged file: compile again
        if program is not None:
            _remember(key, blob)
            return program
    program = _run_passes(spec, hw, prompt_len=prompt_len, verify=verify, device=device)
    blob = _pack(program)
    _remember(key, blob)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)                       # atomic: parallel runs never see half a file
    except OSError:
        pass                                        # a read-only folder: no disk cache
    return program


#: Environment variable naming the compile cache's folder (``off``, ``0`` or empty: no cache).
CACHE_ENV = "FPGPT_COMPILE_CACHE"
_MEMORY: dict[str, bytes] = {}                      # key -> packed Program, this process
_MEMORY_LIMIT = 32                                  # entries (an XL program packs to ~0.2 MB)
_DIGEST: list[str] = []


def cache_dir() -> Path | None:
    """The compile cache's folder: ``$FPGPT_COMPILE_CACHE``, else ``build/compile-cache`` in the
    working directory (as ``fpgpt synth`` keeps ``build/synth``); None when turned off."""
    v = os.environ.get(CACHE_ENV)
    if v is None:
        return Path("build") / "compile-cache"
    if v.strip().lower() in ("", "0", "off", "no", "false"):
        return None
    return Path(v)


def _source_digest() -> str:
    """sha256 over every fpgpt source file (paths and contents), once per process."""
    if not _DIGEST:
        root = Path(__file__).resolve().parents[1]
        h = hashlib.sha256()
        for p in sorted(root.rglob("*.py")):
            h.update(p.relative_to(root).as_posix().encode() + b"\0")
            h.update(p.read_bytes())
        _DIGEST.append(h.hexdigest())
    return _DIGEST[0]


def _cache_key(spec: ModelSpec, hw: HardwareConfig, prompt_len: int, verify: bool,
               device: int) -> str:
    parts = (_source_digest(), repr(spec), repr(hw), prompt_len, bool(verify), device)
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:40]


#: First bytes of a cache entry (a later layout gets a new tag, and old entries miss).
_FORMAT = b"FPGPTCC\x02"


def _pack(program: Program) -> bytes:
    """A cache entry: the tag, the sha256 of the rest, then (marshal, data only) every stream's
    instructions as ``(op, fields, waits, comment)`` tuples and the Program file
    (:meth:`Program.to_bytes`) of everything else (header, regions, registers, meta, memory
    image) with its streams left empty. Reading tuples back is about 25 times faster than
    decoding the instruction words (GPT-2 XL: 10,226 instructions)."""
    streams = {k: [(i.op, i.args, i.waits, i.comment) for i in v] for k, v in program.streams.items()}
    rest = Program({k: [] for k in program.streams}, program.regions, program.segments,
                   program.registers, program.meta)
    body = marshal.dumps((streams, rest.to_bytes()))
    return _FORMAT + hashlib.sha256(body).digest() + body


def _unpack(blob: bytes) -> Program:
    n = len(_FORMAT)
    body = blob[n + 32:]
    if blob[:n] != _FORMAT or hashlib.sha256(body).digest() != blob[n:n + 32]:
        raise ValueError("not a cache entry of this layout, or damaged")
    streams, rest = marshal.loads(body)
    program = Program.from_bytes(rest, origin="compile cache")
    for name in program.streams:
        program.streams[name] = [Instr(op, args, waits, c) for op, args, waits, c in streams[name]]
    if set(streams) != set(program.streams):
        raise ValueError("stream names")
    return program


def _remember(key: str, blob: bytes) -> None:
    if key not in _MEMORY and len(_MEMORY) >= _MEMORY_LIMIT:
        del _MEMORY[next(iter(_MEMORY))]            # the oldest entry
    _MEMORY[key] = blob


def _run_passes(spec: ModelSpec, hw: HardwareConfig, *, prompt_len: int, weights=None,
                verify: bool = True, device: int = 0) -> Program:
    """The passes, in order (module docstring)."""
    sh = shard(spec, hw.devices, device)
    if not isinstance(prompt_len, int) or isinstance(prompt_len, bool) or not 1 <= prompt_len < spec.n_ctx:
        raise CompileError(f"prompt_len must be an integer in 1..{spec.n_ctx - 1} for model "
                           f"'{spec.name}' (n_ctx {spec.n_ctx}), not {prompt_len!r}")
    graph = partition_graph(lower(spec), sh)
    verify_graph(graph)
    layout = plan_layout(spec, hw, sh)
    segments = memory_image(layout, weights, sh) if weights is not None else None
    regions = [(r.addr, r.end) for r in layout.regions.values()]
    streams, plans = {}, {}
    for name in STREAMS:
        plan = plan_buffers(spec, hw, name, prompt_len=prompt_len, vec_len=layout.vec_len, sh=sh)
        tiled = tile_graph(graph, hw, plan.slot_elems)
        verify_graph(tiled)
        items = codegen_stream(name, tiled, spec, layout, plan, hw, sh)
        regmax = stream_regmax(spec, name, plan.tiles, sh.devices)
        if verify:
            _verify(name, [it.instr for it in items], hw, regions, regmax, "before scheduling")
        streams[name] = schedule(items, regmax, layout.writable, devices=sh.devices)
        plans[name] = plan
        if verify:
            _verify(name, streams[name], hw, regions, regmax, "after scheduling")
    program = emit_program(spec, hw, layout, streams, prompt_len=prompt_len, segments=segments,
                           plans=plans)
    if sh.devices > 1:
        program.meta["partition"] = sh.to_dict()
    return program


def _verify(name, instrs, hw, regions, regmax, when) -> None:
    try:
        verify_stream(name, instrs, hw, regions=regions, max_regs=regmax)
    except ProgramError as e:
        raise CompileError(f"internal compiler error {when}: {e}") from None
