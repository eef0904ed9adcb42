"""Program: what the compiler emits and the simulator and the RTL run.

A Program holds named instruction streams (``prefill``, ``decode``), the HBM layout (named
regions), the HBM memory image (segments of bytes, when weights were given), the register values
the host sets before each stream, and metadata (model, hardware artifact name, the config).

File format ``.fpx`` (all little-endian)::

    magic    8 bytes  b"FPGPTX\\x00\\x01"
    version  u32      FORMAT_VERSION
    hlen     u32      length of the header
    header   hlen bytes of UTF-8 JSON: metadata, regions, registers, streams and segments with
             their offsets and lengths into the payload
    payload  instruction words of each stream, then segment bytes
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .encoding import ISAError, Instr, decode_many, encode_many
from .table import WORD_BYTES

__all__ = ["Region", "Program", "FORMAT_VERSION", "MAGIC"]

MAGIC = b"FPGPTX\x00\x01"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Region:
    """A named HBM region: byte address, size, and what it holds."""
    name: str
    addr: int
    nbytes: int
    shape: tuple[int, ...] = ()
    dtype: str = "f16"

    @property
    def end(self) -> int:
        return self.addr + self.nbytes


@dataclass
class Program:
    streams: dict[str, list[Instr]]
    regions: dict[str, Region] = field(default_factory=dict)
    segments: list[tuple[int, bytes]] = field(default_factory=list)
    registers: dict[str, dict[int, int]] = field(default_factory=dict)  # stream -> {reg: value}
    meta: dict[str, Any] = field(default_factory=dict)

    # -- convenience ------------------------------------------------------------------------
    def stream(self, name: str) -> list[Instr]:
        try:
            return self.streams[name]
        except KeyError:
            raise ISAError(f"program has no stream {name!r}; streams: {', '.join(self.streams)}") from None

    @property
    def instruction_count(self) -> int:
        return sum(len(s) for s in self.streams.values())

    @property
    def hbm_bytes(self) -> int:
        return max((r.end for r in self.regions.values()), default=0)

    def image(self) -> tuple[bytes, dict[str, int]]:
        """The program as the device loads it: every stream's words back to back.

        Returns
        -------
        (bytes, dict)
            The image (``WORD_BYTES`` per instruction) and each stream's entry (word index).
            Branch targets stay stream-relative: the device adds the entry
            (docs/execution.md), so no word is relocated.
        """
        out, entries = bytearray(), {}
        for name, instrs in self.streams.items():
            entries[name] = len(out) // WORD_BYTES
            out += encode_many(instrs)
        return bytes(out), entries

    # -- serialisation ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        payload = bytearray()
        streams_hdr = {}
        for name, instrs in self.streams.items():
            blob = encode_many(instrs)
            streams_hdr[name] = {"offset": len(payload), "count": len(instrs)}
            payload += blob
        segs_hdr = []
        for addr, data in self.segments:
            segs_hdr.append({"addr": addr, "offset": len(payload), "nbytes": len(data)})
            payload += data
        header = {
            "meta": self.meta,
            "regions": [{"name": r.name, "addr": r.addr, "nbytes": r.nbytes,
                         "shape": list(r.shape), "dtype": r.dtype} for r in self.regions.values()],
            "registers": {s: {str(k): v for k, v in regs.items()} for s, regs in self.registers.items()},
            "streams": streams_hdr,
            "segments": segs_hdr,
        }
        h = json.dumps(header, sort_keys=True).encode()
        return MAGIC + struct.pack("<II", FORMAT_VERSION, len(h)) + h + bytes(payload)

    @classmethod
    def from_bytes(cls, data: bytes, *, origin: str = "program") -> "Program":
        if data[:8] != MAGIC:
            raise ISAError(f"{origin}: not an fpgpt program (bad magic); was it written by 'fpgpt compile'?")
        if len(data) < 16:
            raise ISAError(f"{origin}: truncated header")
        version, hlen = struct.unpack("<II", data[8:16])
        if version != FORMAT_VERSION:
            raise ISAError(f"{origin}: format version {version}, this fpgpt reads version "
                           f"{FORMAT_VERSION}; recompile it with this fpgpt")
        try:
            header = json.loads(data[16:16 + hlen].decode())
            payload = memoryview(data)[16 + hlen:]
            streams = {}
            for name, s in header["streams"].items():
                o, n = s["offset"], s["count"] * WORD_BYTES
                if o + n > len(payload):
                    raise ISAError(f"{origin}: stream {name!r} runs past the end of the file (truncated?)")
                streams[name] = decode_many(bytes(payload[o:o + n]))
            segments = []
            for s in header["segments"]:
                o, n = s["offset"], s["nbytes"]
                if o + n > len(payload):
                    raise ISAError(f"{origin}: memory image runs past the end of the file (truncated?)")
                segments.append((s["addr"], bytes(payload[o:o + n])))
            regions = {r["name"]: Region(r["name"], r["addr"], r["nbytes"], tuple(r["shape"]), r["dtype"])
                       for r in header["regions"]}
            registers = {s: {int(k): v for k, v in regs.items()} for s, regs in header["registers"].items()}
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
            if isinstance(e, ISAError):
                raise
            raise ISAError(f"{origin}: corrupt header ({e.__class__.__name__}: {e})") from None
        return cls(streams, regions, segments, registers, header.get("meta", {}))

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; use --force to replace it")
        path.write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> "Program":
        path = Path(path)
        if not path.is_file():
            raise ISAError(f"program file {str(path)!r} not found")
        return cls.from_bytes(path.read_bytes(), origin=str(path))
