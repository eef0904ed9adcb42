"""HardwareConfig: the one description of an fpgpt accelerator design.

Every other part of fpgpt (compiler tiling, simulator timing, RTL parameters, synthesis, energy)
reads its hardware numbers from a :class:`HardwareConfig` and keeps no copy of its own.
Presets live in ``fpgpt/presets/*.toml``; each number there names its source in the preset's
``[sources]`` table.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError", "DeviceConfig", "MPUConfig", "VPUConfig", "BufferConfig", "HBMConfig",
    "LinkConfig", "PowerConfig", "POWER_CONSTANTS", "HardwareConfig", "preset_names", "load_preset", "load_config",
]


class ConfigError(ValueError):
    """A hardware configuration that is malformed or physically impossible."""


def _check_int(path: str, value: Any, *, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{path} must be an integer >= {minimum}, not {value!r}")


def _check_float(path: str, value: Any, *, lo: float = 0.0, hi: float = math.inf,
                 lo_open: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and value <= hi
    if not ok:
        bound = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi != math.inf else "")
        raise ConfigError(f"{path} must be a number {bound}, not {value!r}")


def _check_pow2(path: str, value: int) -> None:
    _check_int(path, value)
    if value & (value - 1):
        raise ConfigError(f"{path} must be a power of two, not {value!r}")


@dataclass(frozen=True)
class DeviceConfig:
    """The FPGA part and its resources (what synthesis estimates are compared against)."""

    part: str
    luts: int
    ffs: int
    dsps: int       # DSP48E2 slices
    bram36: int     # 36 Kb block RAMs
    uram: int       # 288 Kb UltraRAMs

    def validate(self, p: str = "device") -> None:
        if not isinstance(self.part, str) or not self.part:
            raise ConfigError(f"{p}.part must be a part name such as 'xcu280-fsvh2892-2L-e', not {self.part!r}")
        for name in ("luts", "ffs", "dsps", "bram36", "uram"):
            _check_int(f"{p}.{name}", getattr(self, name), minimum=0)

    def capacity(self) -> dict[str, int]:
        """Resources under the names synthesis reports use."""
        return {"LUT": self.luts, "FF": self.ffs, "DSP48E2": self.dsps, "BRAM36": self.bram36,
                "URAM": self.uram}


@dataclass(frozen=True)
class MPUConfig:
    """Matrix unit: ``lanes`` dot products in parallel, each over ``width`` FP16 pairs per cycle.

    Products are exact in FP32 and reduced by a ``width``-input FP32 adder tree (log2(width)
    levels), then accumulated in FP32 in each lane (docs/numerics.md): the accumulator adder is
    pipelined over ``acc_latency`` registers, with that many dot products in flight.
    """

    lanes: int
    width: int
    mul_latency: int    # FP16 multiplier pipeline depth, cycles
    add_latency: int    # FP32 adder pipeline depth, cycles (each tree level and the bias add)
    #: Registers of the accumulator's loop, ``D``: its FP32 adder is followed by a ring of ``D``
    #: registers that synthesis retimes it over, with ``D`` dot products (lane groups of output
    #: columns) in flight per lane; a dot product's next chunk enters ``D`` cycles (or a
    #: multiple) after its previous one (fpgpt/hw/mpu.py, docs/rtl.md). Derived with the
    #: Fmax walk (fpgpt/hw/fmax.py, docs/rtl-clock.md): the smallest ``D`` whose loop
    #: stage, the adder's loop (14.7 ns) / D, is under one DSP48E2 between registers (3.04 ns):
    #: 5. A larger ``D`` costs bubbles when an MM has fewer than ``D`` lane groups.
    acc_latency: int = 5

    def validate(self, p: str = "mpu") -> None:
        _check_int(f"{p}.lanes", self.lanes)
        _check_pow2(f"{p}.width", self.width)
        _check_int(f"{p}.mul_latency", self.mul_latency)
        _check_int(f"{p}.add_latency", self.add_latency)
        _check_int(f"{p}.acc_latency", self.acc_latency)

    @property
    def macs_per_cycle(self) -> int:
        return self.lanes * self.width

    @property
    def tree_levels(self) -> int:
        return self.width.bit_length() - 1

    @property
    def pipeline_cycles(self) -> int:
        """Cycles from a dot product's last chunk entering a lane to its FP16 result leaving.

        Multiplier, tree levels, the accumulator's ``acc_latency`` loop registers, the bias
        adder and the FP16 rounding register: the count the RTL lane (fpgpt/hw/mpu.py)
        measures in cocotb.
        """
        return (self.mul_latency + self.tree_levels * self.add_latency + self.acc_latency
                + self.add_latency + 1)


@dataclass(frozen=True)
class VPUConfig:
    """Vector unit: ``width`` FP32 lanes; FP16 in and out (docs/numerics.md)."""

    width: int
    add_latency: int
    mul_latency: int
    special_latency: int    # exp / reciprocal / rsqrt pipelines, cycles
    #: Registers of each lane accumulator's loop in the summing passes (LAYERNORM's two,
    #: SOFTMAX's second), ``k``: the FP32 adder is followed by a ring of ``k`` registers that
    #: synthesis retimes it over, holding ``k`` interleaved partial sums (C-slow; numerics.vsum's
    #: ``partials``: the sums' order depends on it), so a summing pass takes a beat a cycle and
    #: a row ``k`` cycles more to drain (fpgpt/hw/vpu.py, docs/rtl.md "VPU"). Derived:
    #: ``fmax.stages_needed`` of the f32_add (10.47 ns, fpgpt synth / docs/rtl-clock.md) at
    #: the period the core targets; 4 reaches one DSP48E2 stage (3.04 ns, 329 MHz). Each step
    #: costs about +0.3 % of GPT-2 medium decode on u280 (docs/rtl-clock.md, session 12).
    acc_latency: int = 2
    #: Beats (``width`` FP16 elements, with the LAYERNORM gamma / beta beside them) of the
    #: LAYERNORM / SOFTMAX row buffer: the VPU runs a group of rows pass by pass, paying its
    #: pipeline fill once per group, and a group is at most ``buffer_beats >> ceil(log2(beats
    #: per row))`` rows (``fpgpt.geometry.vpu_group_rows``). A power of two. 4096 on the
    #: presets: GPT-2 decode's 16 (medium) softmax rows of up to 1,024 columns in one group on
    #: u280 (4 lanes: 256 beats a row); the u280 VPU block's BRAM36 3 -> 30 (22 for the buffer,
    #: 8 for the per-row scalars; docs/rtl.md, "Groups of rows").
    buffer_beats: int = 4096
    #: ``r``: lanes per special-function lane. Only the first ``width / r`` lanes have the exp
    #: and reciprocal units (and GELU's chain); the passes that need them (GELU, SOFTMAX's
    #: exp-sum and output) take each beat in ``r`` sub-beats of ``width / r`` elements, the
    #: others run at full width (fpgpt/hw/vpu.py, "Special lanes"). SOFTMAX's exp-sum is then
    #: a sum over ``width / r`` lanes (numerics.softmax's ``sum_width``). A power of two, at
    #: most ``width``. 1: every lane has them.
    special_ratio: int = 1
    #: Registers behind the Newton-iteration units, the reciprocal and the reciprocal square
    #: root: GELU's ``1/(1+e)`` in the special lanes' chain, and the scalar phase's SOFTMAX
    #: ``1/sum`` and LAYERNORM ``rsqrt`` (fpgpt/hw/vpu_lane.py ``chain_latency`` and
    #: ``scalar_wait``). The exp, about twice their logic (docs/rtl-clock.md: exp 211.65 ns,
    #: recip 81.34, rsqrt 105.23), keeps ``special_latency``. 0 (the default): the same as
    #: ``special_latency``, as every preset had until session 24. See :attr:`recip_stages`.
    recip_latency: int = 0

    @property
    def recip_stages(self) -> int:
        """The reciprocal's and rsqrt's registers: ``recip_latency``, or ``special_latency``
        where that is 0."""
        return self.recip_latency or self.special_latency

    @property
    def special_lanes(self) -> int:
        """Lanes with the special functions, ``width / special_ratio``."""
        return self.width // self.special_ratio

    @property
    def light_lanes(self) -> int:
        """Lanes without them, ``width - special_lanes``."""
        return self.width - self.special_lanes

    def validate(self, p: str = "vpu") -> None:
        _check_pow2(f"{p}.width", self.width)
        _check_int(f"{p}.add_latency", self.add_latency)
        _check_int(f"{p}.mul_latency", self.mul_latency)
        _check_int(f"{p}.special_latency", self.special_latency)
        _check_int(f"{p}.acc_latency", self.acc_latency)
        _check_pow2(f"{p}.buffer_beats", self.buffer_beats)
        _check_pow2(f"{p}.special_ratio", self.special_ratio)
        _check_int(f"{p}.recip_latency", self.recip_latency, minimum=0)
        if self.special_ratio > self.width:
            raise ConfigError(f"{p}.special_ratio = {self.special_ratio} is more than {p}.width = "
                              f"{self.width}: at least one lane needs the special functions; "
                              f"make it at most the width")


@dataclass(frozen=True)
class BufferConfig:
    """On-chip scratchpad (one FP16 address space, banked)."""

    sram_kib: int
    banks: int
    queue_depth: int    # instructions each unit's queue holds

    def validate(self, p: str = "buffers") -> None:
        _check_int(f"{p}.sram_kib", self.sram_kib)
        _check_int(f"{p}.banks", self.banks)
        _check_int(f"{p}.queue_depth", self.queue_depth)
        if self.sram_elements > 2**32:
            raise ConfigError(f"{p}.sram_kib={self.sram_kib} exceeds the ISA's 32-bit scratchpad "
                              "address (8 GiB); use a smaller scratchpad")

    @property
    def sram_bytes(self) -> int:
        return self.sram_kib * 1024

    @property
    def sram_elements(self) -> int:
        return self.sram_bytes // 2


@dataclass(frozen=True)
class HBMConfig:
    """High-bandwidth memory: ``channels`` pseudo-channels behind one AXI port each."""

    channels: int
    port_bits: int            # user-side AXI data width per pseudo-channel, at the core clock
    channel_gbps: float       # peak bandwidth of one pseudo-channel, GB/s (1e9 B/s)
    efficiency: float         # sustained fraction of peak for long sequential bursts
    latency_ns: float         # read latency of one request (page hit)
    interleave_bytes: int     # address interleave granule across pseudo-channels
    capacity_mib: int         # total capacity
    refresh_interval_ns: float  # tREFI
    refresh_ns: float           # time a refresh blocks the channel (tRFC)
    min_burst_bytes: int        # smallest access the controller serves at full efficiency
    page_bytes: int = 1024      # DRAM row (page) per pseudo-channel: what one activation opens

    def validate(self, p: str = "hbm") -> None:
        _check_int(f"{p}.channels", self.channels)
        _check_pow2(f"{p}.port_bits", self.port_bits)
        if self.port_bits < 32:
            raise ConfigError(f"{p}.port_bits must be >= 32, not {self.port_bits!r}")
        _check_float(f"{p}.channel_gbps", self.channel_gbps)
        _check_float(f"{p}.efficiency", self.efficiency, hi=1.0)
        _check_float(f"{p}.latency_ns", self.latency_ns, lo_open=False)
        _check_pow2(f"{p}.interleave_bytes", self.interleave_bytes)
        _check_int(f"{p}.capacity_mib", self.capacity_mib)
        _check_float(f"{p}.refresh_interval_ns", self.refresh_interval_ns)
        _check_float(f"{p}.refresh_ns", self.refresh_ns, lo_open=False)
        if self.refresh_ns >= self.refresh_interval_ns:
            raise ConfigError(f"{p}.refresh_ns ({self.refresh_ns}) must be shorter than "
                              f"{p}.refresh_interval_ns ({self.refresh_interval_ns})")
        _check_pow2(f"{p}.min_burst_bytes", self.min_burst_bytes)
        _check_pow2(f"{p}.page_bytes", self.page_bytes)
        if self.interleave_bytes < self.port_bits // 8:
            raise ConfigError(f"{p}.interleave_bytes ({self.interleave_bytes}) must be at least one "
                              f"AXI beat ({self.port_bits // 8} bytes)")

    @property
    def capacity_bytes(self) -> int:
        return self.capacity_mib * 1024 * 1024


@dataclass(frozen=True)
class LinkConfig:
    """Ring links between devices (one per neighbour direction)."""

    count: int            # links per device
    gbps: float           # line rate, Gb/s (1e9 bit/s)
    latency_ns: float     # one hop, first bit in to first bit out
    overhead: float       # protocol overhead fraction (e.g. 64b/66b)
    packet_bytes: int     # payload bytes per packet
    packet_overhead_ns: float  # fixed cost per packet (framing, flow control)

    def validate(self, p: str = "link") -> None:
        _check_int(f"{p}.count", self.count, minimum=0)
        _check_float(f"{p}.gbps", self.gbps)
        _check_float(f"{p}.latency_ns", self.latency_ns, lo_open=False)
        _check_float(f"{p}.overhead", self.overhead, lo_open=False, hi=0.99)
        _check_int(f"{p}.packet_bytes", self.packet_bytes)
        _check_float(f"{p}.packet_overhead_ns", self.packet_overhead_ns, lo_open=False)

    @property
    def payload_bytes_per_s(self) -> float:
        return self.gbps * 1e9 / 8 * (1.0 - self.overhead)


#: The constants of :class:`PowerConfig`, each with an optional ``<name>_range = [lo, hi]``.
POWER_CONSTANTS = ("static_w", "pj_per_mac", "pj_per_vpu_op", "pj_per_sram_byte", "pj_per_hbm_bit",
                   "nj_per_hbm_activation", "pj_per_link_bit", "link_w")


@dataclass(frozen=True)
class PowerConfig:
    """Power and energy constants of one card, read by :mod:`fpgpt.energy` (docs/energy.md).

    Each constant ``x`` may carry ``x_range = [lo, hi]``, the spread its sources allow; without
    one the range collapses to the value (a measured figure: Vivado ``report_power``, ``xbutil``).
    """

    static_w: float         # board power with the design loaded, clocked and idle
    pj_per_mac: float       # FP16 multiply + FP32 add, whole datapath, per MAC
    pj_per_vpu_op: float    # one FP32 vector lane operation
    pj_per_sram_byte: float  # one scratchpad byte read or written
    pj_per_hbm_bit: float   # one HBM bit read or written (DRAM, I/O and the FPGA's controller)
    link_w: float           # per active link (transceiver + MAC + cable end), when devices > 1
    nj_per_hbm_activation: float = 0.0  # one HBM row (page) activation
    pj_per_link_bit: float = 0.0        # one payload bit sent on a ring link
    static_w_range: tuple[float, float] | None = None
    pj_per_mac_range: tuple[float, float] | None = None
    pj_per_vpu_op_range: tuple[float, float] | None = None
    pj_per_sram_byte_range: tuple[float, float] | None = None
    pj_per_hbm_bit_range: tuple[float, float] | None = None
    link_w_range: tuple[float, float] | None = None
    nj_per_hbm_activation_range: tuple[float, float] | None = None
    pj_per_link_bit_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        for name in POWER_CONSTANTS:   # TOML gives lists: keep tuples so configs compare and hash
            r = getattr(self, name + "_range")
            if isinstance(r, list):
                object.__setattr__(self, name + "_range", tuple(r))

    def validate(self, p: str = "power") -> None:
        for name in POWER_CONSTANTS:
            v = getattr(self, name)
            _check_float(f"{p}.{name}", v, lo_open=False)
            r = getattr(self, name + "_range")
            if r is None:
                continue
            if not isinstance(r, tuple) or len(r) != 2:
                raise ConfigError(f"{p}.{name}_range must be [low, high], not {r!r}")
            for x in r:
                _check_float(f"{p}.{name}_range", x, lo_open=False)
            if not r[0] <= v <= r[1]:
                raise ConfigError(f"{p}.{name} = {v!r} lies outside {p}.{name}_range = "
                                  f"[{r[0]!r}, {r[1]!r}]; widen the range or remove it (a measured "
                                  "figure needs no range)")

    def range_of(self, name: str) -> tuple[float, float]:
        """``(low, high)`` of constant ``name``; ``(value, value)`` when it has no range."""
        if name not in POWER_CONSTANTS:
            raise ConfigError(f"unknown power constant {name!r}; known: {', '.join(POWER_CONSTANTS)}")
        r = getattr(self, name + "_range")
        v = getattr(self, name)
        return (float(r[0]), float(r[1])) if r is not None else (float(v), float(v))


_SECTIONS = {"device": DeviceConfig, "mpu": MPUConfig, "vpu": VPUConfig, "buffers": BufferConfig, "hbm": HBMConfig,
             "link": LinkConfig, "power": PowerConfig}


@dataclass(frozen=True)
class HardwareConfig:
    """The one description of a design: every hardware number fpgpt uses comes from here."""

    name: str
    description: str
    clock_mhz: float
    devices: int
    device: DeviceConfig
    mpu: MPUConfig
    vpu: VPUConfig
    buffers: BufferConfig
    hbm: HBMConfig
    link: LinkConfig
    power: PowerConfig
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        self.validate()

    # -- validation -------------------------------------------------------------------------
    def validate(self) -> None:
        if not isinstance(self.name, str) or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"name must be letters, digits, '-' or '_', not {self.name!r}")
        _check_float("clock_mhz", self.clock_mhz)
        _check_int("devices", self.devices)
        for key, cls in _SECTIONS.items():
            section = getattr(self, key)
            if not isinstance(section, cls):
                raise ConfigError(f"{key} must be a {cls.__name__}, not {type(section).__name__}")
            section.validate(key)
        if self.devices > 1 and self.link.count == 0:
            raise ConfigError(f"devices={self.devices} needs ring links, but link.count is 0")

    # -- derived figures (units in the names) -----------------------------------------------
    @property
    def cycle_ns(self) -> float:
        return 1e3 / self.clock_mhz

    @property
    def mpu_macs_per_cycle(self) -> int:
        return self.mpu.macs_per_cycle

    @property
    def mpu_peak_flops(self) -> float:
        """Peak MPU FLOP/s of one device (2 FLOPs per MAC)."""
        return 2.0 * self.mpu.macs_per_cycle * self.clock_mhz * 1e6

    @property
    def hbm_port_bytes_per_s(self) -> float:
        """What one AXI port can carry at the core clock."""
        return self.hbm.port_bits / 8 * self.clock_mhz * 1e6

    @property
    def hbm_channel_bytes_per_s(self) -> float:
        """Peak of one pseudo-channel as the design sees it: the slower of the port and the memory."""
        return min(self.hbm.channel_gbps * 1e9, self.hbm_port_bytes_per_s)

    @property
    def hbm_peak_bytes_per_s(self) -> float:
        """Peak HBM bandwidth of one device (all pseudo-channels)."""
        return self.hbm.channels * self.hbm_channel_bytes_per_s

    @property
    def hbm_bytes_per_cycle(self) -> float:
        return self.hbm_peak_bytes_per_s / (self.clock_mhz * 1e6)

    @property
    def artifact_name(self) -> str:
        """A name that identifies the configuration in file names (VTA style)."""
        sr = f"s{self.vpu.special_lanes}" if self.vpu.special_ratio > 1 else ""
        return (f"{self.name}_{self.mpu.lanes}x{self.mpu.width}_v{self.vpu.width}{sr}"
                f"_h{self.hbm.channels}x{self.hbm.port_bits}_{self.clock_mhz:g}mhz")

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "description": self.description,
                             "clock_mhz": self.clock_mhz, "devices": self.devices}
        for key in _SECTIONS:
            # plain data, as JSON and TOML hold it: a (lo, hi) range is a list
            d[key] = {k: list(v) if isinstance(v, tuple) else v
                      for k, v in dataclasses.asdict(getattr(self, key)).items()}
        d["sources"] = dict(self.sources)
        return d

    def derived(self) -> dict[str, float]:
        return {
            "mpu_macs_per_cycle": self.mpu_macs_per_cycle,
            "mpu_peak_tflops": self.mpu_peak_flops / 1e12,
            "hbm_channel_gb_per_s": self.hbm_channel_bytes_per_s / 1e9,
            "hbm_peak_gb_per_s": self.hbm_peak_bytes_per_s / 1e9,
            "hbm_bytes_per_cycle": self.hbm_bytes_per_cycle,
            "sram_mib": self.buffers.sram_bytes / 2**20,
            "hbm_capacity_gib": self.hbm.capacity_bytes / 2**30,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, origin: str = "config") -> "HardwareConfig":
        d = dict(d)
        known = {"name", "description", "clock_mhz", "devices", "sources", *_SECTIONS}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{origin}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
        kwargs: dict[str, Any] = {}
        for key in ("name", "clock_mhz", "devices"):
            if key not in d:
                raise ConfigError(f"{origin}: missing key {key!r}")
            kwargs[key] = d[key]
        kwargs["description"] = d.get("description", "")
        kwargs["sources"] = dict(d.get("sources", {}))
        for key, section_cls in _SECTIONS.items():
            sd = d.get(key)
            if not isinstance(sd, dict):
                raise ConfigError(f"{origin}: missing table [{key}]")
            names = {f.name for f in fields(section_cls)}
            extra = sorted(set(sd) - names)
            if extra:
                raise ConfigError(f"{origin}: unknown key {key}.{extra[0]}; known: {', '.join(sorted(names))}")
            required = {f.name for f in fields(section_cls)
                        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
            missing = sorted(required - set(sd))
            if missing:
                raise ConfigError(f"{origin}: missing key {key}.{missing[0]}")
            kwargs[key] = section_cls(**sd)
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "HardwareConfig":
        """A copy with top-level fields or dotted section fields (``"hbm.channels"``) changed."""
        d = self.to_dict()
        for k, v in changes.items():
            section, _, leaf = k.replace("__", ".").partition(".")
            if leaf:
                if section not in _SECTIONS or leaf not in d[section]:
                    raise ConfigError(f"unknown field {k!r}")
                d[section][leaf] = v
            else:
                if section not in d:
                    raise ConfigError(f"unknown field {k!r}")
                d[section] = v
        return HardwareConfig.from_dict(d)

    def to_toml(self) -> str:
        def fmt(v: Any) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, (int, float)):
                return repr(v)
            if isinstance(v, (list, tuple)):
                return "[" + ", ".join(fmt(x) for x in v) + "]"
            return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

        d = self.to_dict()
        lines = [f"{k} = {fmt(d[k])}" for k in ("name", "description", "clock_mhz", "devices")]
        for key in _SECTIONS:
            lines += ["", f"[{key}]"] + [f"{k} = {fmt(v)}" for k, v in d[key].items() if v is not None]
        if d["sources"]:
            lines += ["", "[sources]"] + [f'"{k}" = {fmt(v)}' for k, v in d["sources"].items()]
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path, *, overwrite: bool = False) -> None:
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --force) to replace it")
        path.write_text(self.to_toml())


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("fpgpt.presets").iterdir()
                  if p.name.endswith(".toml"))


def load_preset(name: str) -> HardwareConfig:
    """Load a shipped preset by name (``u280``, ``dfx``, ``u55c``, ``tiny``)."""
    if name not in preset_names():
        raise ConfigError(f"unknown hardware preset {name!r}; known presets: {', '.join(preset_names())}")
    text = resources.files("fpgpt.presets").joinpath(f"{name}.toml").read_text()
    return HardwareConfig.from_dict(tomllib.loads(text), origin=f"preset {name}")


def load_config(spec: str | Path) -> HardwareConfig:
    """A preset name or a path to a TOML file."""
    p = Path(spec)
    if isinstance(spec, str) and spec in preset_names():
        return load_preset(spec)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"hardware config file {str(p)!r} not found")
        try:
            data = tomllib.loads(p.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid TOML ({e})") from None
        return HardwareConfig.from_dict(data, origin=str(p))
    return load_preset(str(spec))
