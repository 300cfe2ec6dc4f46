"""The control/status register map, described once.

:data:`REGISTERS` is the single source of the register block (:mod:`hw.registers` generates
its ports and decoder from it), of the README table (:func:`markdown_table`) and of the
constants the host software uses (``ADDR.STATUS``, ``FIELDS.STATUS.done`` ...). This module
is pure Python so ``sw/`` can import it without Amaranth.

All registers are 32 bits wide at byte offsets that are multiples of 4. Access kinds:

========  ===================================================================================
const     read-only; the value comes from the :class:`~hw.config.Config` (:func:`const_values`)
ro        read-only; driven by the hardware
rw        stored in the register block, drives the hardware; resets to ``reset``
w1c       sticky bits set by hardware events; writing 1 to a bit clears it
cmd       write-only pulses (one cycle per write of 1); reads as 0
========  ===================================================================================

Bits outside every field read as 0 and ignore writes. An ``rw`` register with a
:class:`Legal` rule is WARL (write any value, read legal): it holds only what the hardware
can use, the written word made legal (:meth:`Register.legal_value`), and reads that back.
"""

from dataclasses import dataclass
from types import SimpleNamespace

from sw.isa import INSTR_BYTES, ErrorCause


__all__ = [
    "REG_BITS", "REG_BYTES", "ACCESS_KINDS", "WRITABLE", "ID_MAGIC", "VERSION_MAJOR",
    "VERSION_MINOR", "WORD_MASK", "Field", "Legal", "Register", "REGISTERS", "by_name",
    "OFFSETS", "ADDR", "FIELDS", "ADDR_WIDTH", "const_values", "reset_values", "markdown_table",
]

REG_BITS = 32
REG_BYTES = REG_BITS // 8
WORD_MASK = (1 << REG_BITS) - 1

ACCESS_KINDS = ("const", "ro", "rw", "w1c", "cmd")
WRITABLE = ("rw", "w1c", "cmd")

ID_MAGIC = 0x54435247  # "TCRG" in ASCII, most significant byte first
VERSION_MAJOR = 1
VERSION_MINOR = 0

# The AXI4-Lite window of the block: a 4 KiB page (the smallest AXI4-Lite address space
# hw.axi accepts), wide enough for the whole map.
_MIN_ADDR_WIDTH = 12


@dataclass(frozen=True)
class Field:
    """Bits ``[lsb + width - 1 : lsb]`` of a register."""
    name: str
    lsb: int
    width: int
    doc: str = ""

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.lsb

    @property
    def msb(self):
        return self.lsb + self.width - 1

    def insert(self, word, value):
        if not 0 <= value < (1 << self.width):
            raise ValueError(f"field {self.name}: {value} does not fit in {self.width} bits")
        return (word & ~self.mask) | (value << self.lsb)

    def extract(self, word):
        return (word & self.mask) >> self.lsb


@dataclass(frozen=True)
class Legal:
    """The values a WARL register holds: a written word ``w`` becomes ``w % (limit + 1)``
    (``wrap``) or ``min(w, limit)``. The register holds :attr:`bits` bits. ``limit`` is
    ``2**k - 1`` (either rule) or ``2**k`` (``min`` only), so that whether a word is above
    it depends on bits ``[31:k]`` alone and costs the hardware no comparator."""
    limit: int
    wrap: bool = False

    def __post_init__(self):
        k = self.above_from
        if not (0 < self.limit <= WORD_MASK and self.limit in ((1 << k) - 1, 1 << k)
                and not (self.wrap and self.limit != (1 << k) - 1)):
            raise ValueError(f"Legal.limit={self.limit:#x} must be 2**k - 1, or 2**k without"
                             f" wrap, and fit {REG_BITS} bits")

    @property
    def bits(self):
        return self.limit.bit_length()

    @property
    def above_from(self):
        """``k``: a word is above ``limit`` exactly when one of its bits ``[31:k]`` is set."""
        return (self.limit + 1).bit_length() - 1

    def value(self, word):
        return word & self.limit if self.wrap else min(word, self.limit)


@dataclass(frozen=True)
class Register:
    """One 32-bit register.

    ``reset`` is the reset value of an ``rw`` register: an int, or a function of the Config.
    ``value`` gives a ``const`` register's field values: a function ``cfg -> {field: value}``.
    ``warl`` makes an ``rw`` register of one field at bit 0 WARL: a function ``cfg -> Legal``.
    """
    name: str
    offset: int
    access: str
    fields: tuple
    doc: str
    reset: object = 0
    value: object = None
    warl: object = None

    def __post_init__(self):
        if self.warl is not None and (self.access != "rw" or len(self.fields) != 1
                                      or self.fields[0].lsb != 0):
            raise ValueError(f"register {self.name}: only an rw register of one field at bit 0"
                             f" can be WARL")

    @property
    def mask(self):
        mask = 0
        for f in self.fields:
            mask |= f.mask
        return mask

    @property
    def width(self):
        """Bits up to and including the highest field (the width of its hardware port)."""
        return max(f.msb for f in self.fields) + 1

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name!r}")

    def pack(self, **values):
        """The register word holding the given field values (the others 0)."""
        word = 0
        for name, value in values.items():
            word = self.field(name).insert(word, value)
        return word

    def unpack(self, word):
        return {f.name: f.extract(word) for f in self.fields}

    def legal(self, cfg):
        """The :class:`Legal` rule of a WARL register for ``cfg``, else None."""
        return None if self.warl is None else self.warl(cfg)

    def legal_value(self, cfg, word):
        """What the register holds (and reads back) after ``word`` is written whole."""
        word &= self.mask
        legal = self.legal(cfg)
        return word if legal is None else legal.value(word)

    def reset_value(self, cfg):
        if self.access == "const":
            return self.pack(**self.value(cfg))
        if self.access != "rw":
            return 0
        value = self.reset(cfg) if callable(self.reset) else self.reset
        if value < 0 or value & ~self.mask:
            raise ValueError(f"register {self.name}: reset value {value:#x} does not fit its"
                             f" fields (mask {self.mask:#010x})")
        if self.legal_value(cfg, value) != value:
            raise ValueError(f"register {self.name}: reset value {value:#x} is not a legal"
                             f" value (it would read back as {self.legal_value(cfg, value):#x})")
        return value


def _word(name, doc):
    return (Field(name, 0, REG_BITS, doc),)


def _count(doc):
    return _word("count", doc)


_ERR_CAUSE_WIDTH = max(ErrorCause).bit_length()


def _pc_width(cfg):
    """``hw.queues.pc_width``, restated here so that ``sw/`` needs no Amaranth."""
    return cfg.addr_width - (INSTR_BYTES.bit_length() - 1) + 1


def _address(cfg):
    """Any address of the space, wrapping."""
    return Legal((1 << cfg.addr_width) - 1, wrap=True)


def _window_bound(cfg):
    """A window bound: 2**addr_width (the top of the space) at most."""
    return Legal(min(1 << cfg.addr_width, WORD_MASK))


REGISTERS = [
    # -- identification and build parameters -----------------------------------------------
    Register("ID", 0x00, "const", _word("magic", f"{ID_MAGIC:#010x} (\"TCRG\")"),
             "identifies the accelerator", value=lambda cfg: {"magic": ID_MAGIC}),
    Register("VERSION", 0x04, "const", (
        Field("minor", 0, 16, "compatible additions"),
        Field("major", 16, 16, "incompatible changes to this map or the ISA"),
    ), "register map / ISA version",
        value=lambda cfg: {"major": VERSION_MAJOR, "minor": VERSION_MINOR}),
    Register("CONFIG_ARRAY", 0x08, "const", (
        Field("rows", 0, 16, "systolic array rows R"),
        Field("cols", 16, 16, "systolic array columns C"),
    ), "systolic array shape", value=lambda cfg: {"rows": cfg.rows, "cols": cfg.cols}),
    Register("CONFIG_WIDTHS", 0x0C, "const", (
        Field("input", 0, 6, "activation bits"),
        Field("weight", 8, 6, "weight bits"),
        Field("acc", 16, 6, "accumulator bits"),
        Field("output", 24, 6, "requantised output bits"),
        Field("ws", 30, 1, "weight-stationary dataflow built"),
        Field("os", 31, 1, "output-stationary dataflow built"),
    ), "arithmetic widths and dataflows", value=lambda cfg: {
        "input": cfg.input_width, "weight": cfg.weight_width, "acc": cfg.acc_width,
        "output": cfg.output_width, "ws": int(cfg.has_ws), "os": int(cfg.has_os)}),
    Register("CONFIG_SP_ROWS", 0x10, "const", _word("rows", "scratchpad rows"),
             "scratchpad depth", value=lambda cfg: {"rows": cfg.sp_rows}),
    Register("CONFIG_SP_BANKS", 0x14, "const", (
        Field("banks", 0, 16, "single-port banks (bank = high row-address bits)"),
        Field("row_bytes", 16, 16, "bytes (int8 elements) per scratchpad row"),
    ), "scratchpad banking and row width",
        value=lambda cfg: {"banks": cfg.scratchpad_banks, "row_bytes": cfg.sp_row_bytes}),
    Register("CONFIG_ACC_ROWS", 0x18, "const", _word("rows", "accumulator rows of C values"),
             "accumulator depth", value=lambda cfg: {"rows": cfg.acc_rows}),
    Register("CONFIG_BUS", 0x1C, "const", (
        Field("data_bytes", 0, 8, "DMA data bus width in bytes"),
        Field("max_burst", 8, 16, "longest DMA burst in beats"),
        Field("outstanding", 24, 8, "DMA read bursts in flight"),
    ), "DMA master parameters", value=lambda cfg: {
        "data_bytes": cfg.bus_bytes, "max_burst": cfg.max_burst_beats,
        "outstanding": cfg.max_outstanding}),
    # -- control and status ---------------------------------------------------------------------
    Register("CTRL", 0x20, "cmd", (
        Field("start", 0, 1, "run the program at PROG_BASE (ignored while busy)"),
        Field("abort", 1, 1, "stop the running program (ERR_CAUSE = ABORTED)"),
    ), "commands"),
    Register("STATUS", 0x24, "ro", (
        Field("busy", 0, 1, "a program is running"),
        Field("done", 1, 1, "the last program reached HALT"),
        Field("error", 2, 1, "the last program stopped on an error (see ERR_CAUSE)"),
    ), "machine state"),
    Register("ERR_CAUSE", 0x28, "ro", (
        Field("cause", 0, _ERR_CAUSE_WIDTH, "sw.isa.ErrorCause of the last error"),
    ), "why the machine stopped"),
    Register("ERR_PC", 0x2C, "ro", _word("index", "instruction index"),
             "the instruction that faulted"),
    Register("ERR_ADDR", 0x30, "ro", _word("addr", "byte address"),
             "the DRAM address of a DMA fault"),
    Register("PC", 0x34, "ro", _count("instructions dispatched"),
             "progress of the running (or last) program"),
    # -- program and memory window ---------------------------------------------------------------
    Register("PROG_BASE", 0x40, "rw", _word(
        "addr", "byte address of instruction 0, modulo 2**addr_width (WARL)"),
        "where the program is in DRAM", warl=_address),
    Register("PROG_COUNT", 0x44, "rw", _count(
        "instructions; a larger count than 2**(addr_width-3) - 1 holds that (WARL): the"
        " program ends in the same fetch fault"),
        "program length", warl=lambda cfg: Legal((1 << _pc_width(cfg)) - 1)),
    Register("DRAM_BASE", 0x48, "rw", _word(
        "addr", "lowest byte address; a larger value than 2**addr_width holds that, no"
        " window (WARL)"),
        "DMA window base", reset=lambda cfg: cfg.dram_base, warl=_window_bound),
    Register("DRAM_SIZE", 0x4C, "rw", _word(
        "bytes", "window size; a larger value than 2**addr_width holds that (WARL)"),
        "DMA window size", reset=lambda cfg: cfg.dram_size, warl=_window_bound),
    Register("WATCHDOG", 0x50, "rw", _word("cycles", "limit; 0 turns it off"),
             "stop with WATCHDOG when a bus transfer makes no progress for this long"),
    Register("IRQ_ENABLE", 0x54, "rw", (
        Field("done", 0, 1, "interrupt on HALT"),
        Field("error", 1, 1, "interrupt on an error"),
    ), "interrupt sources enabled"),
    Register("IRQ_STATUS", 0x58, "w1c", (
        Field("done", 0, 1, "a program reached HALT"),
        Field("error", 1, 1, "a program stopped on an error"),
    ), "pending interrupts (the IRQ line is the OR of IRQ_STATUS & IRQ_ENABLE)"),
    # -- performance counters (cleared by CTRL.start) ------------------------------------------
    Register("PERF_CYCLES", 0x60, "ro", _count("cycles"), "cycles from start to done"),
    Register("PERF_BUSY_LOAD", 0x64, "ro", _count("cycles"), "cycles the load unit was busy"),
    Register("PERF_BUSY_EXEC", 0x68, "ro", _count("cycles"), "cycles the exec unit was busy"),
    Register("PERF_BUSY_STORE", 0x6C, "ro", _count("cycles"), "cycles the store unit was busy"),
    Register("PERF_STALL", 0x70, "ro", _count("cycles"),
             "cycles the exec unit waited for tokens or data"),
    Register("PERF_DMA_RD_BYTES", 0x74, "ro", _count("bytes"), "bytes the DMA read"),
    Register("PERF_DMA_WR_BYTES", 0x78, "ro", _count("bytes"), "bytes the DMA wrote"),
    Register("PERF_MACS_LO", 0x7C, "ro", _count("MACs, bits 31..0"),
             "multiply-accumulates performed (low word)"),
    Register("PERF_MACS_HI", 0x80, "ro", _count("MACs, bits 63..32"),
             "multiply-accumulates performed (high word)"),
]

_BY_NAME = {reg.name: reg for reg in REGISTERS}


def by_name(name):
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no register named {name!r}") from None


OFFSETS = {reg.name: reg.offset for reg in REGISTERS}

#: Byte offsets by attribute: ``ADDR.STATUS``.
ADDR = SimpleNamespace(**OFFSETS)

#: Fields by attribute: ``FIELDS.STATUS.done.mask``.
FIELDS = SimpleNamespace(**{
    reg.name: SimpleNamespace(**{f.name: f for f in reg.fields}) for reg in REGISTERS})

#: Bits of the register block's AXI4-Lite byte address.
ADDR_WIDTH = max(_MIN_ADDR_WIDTH, (max(OFFSETS.values()) + REG_BYTES - 1).bit_length())


def const_values(cfg):
    """``{name: word}`` of every ``const`` register for ``cfg``."""
    return {reg.name: reg.reset_value(cfg) for reg in REGISTERS if reg.access == "const"}


def reset_values(cfg):
    """``{name: word}`` read from every register right after reset (``ro`` inputs at 0)."""
    return {reg.name: reg.reset_value(cfg) for reg in REGISTERS}


def _bits(f):
    return f"[{f.msb}:{f.lsb}]" if f.width > 1 else f"[{f.lsb}]"


def markdown_table():
    """The register map as a Markdown table (README), generated from :data:`REGISTERS`."""
    lines = ["| register | offset | access | fields (bits) | meaning |",
             "|---|---|---|---|---|"]
    for reg in REGISTERS:
        fields = ", ".join(f"`{f.name}` {_bits(f)}: {f.doc}" for f in reg.fields)
        lines.append(f"| {reg.name} | {reg.offset:#06x} | {reg.access} | {fields} | {reg.doc} |")
    return "\n".join(lines)
