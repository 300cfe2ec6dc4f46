"""The instruction set: one table read by the hardware decoder, the assembler and the golden model.

Every instruction is 128 bits, little-endian in DRAM (16 bytes, instruction ``i`` at
``program_base + 16*i``). Bits 0..3 hold the opcode, bits 4..7 the dependency-token flags;
what the other bits mean depends on the opcode (:data:`INSTRUCTIONS`). Bits that no field of
the opcode claims are reserved and must be zero: a set reserved bit is an illegal instruction.

Three in-order queues execute the instructions (VTA-style): ``load`` (LOAD), ``exec``
(PRELOAD, MATMUL) and ``store`` (CONFIG, STORE). FENCE and HALT are handled by the dispatcher.
Queues are chained load <-> exec <-> store; each instruction may pop a token from its
``prev`` / ``next`` neighbour before it starts and push one to it after it completes:

==========  ==================  ==================
queue       prev                next
==========  ==================  ==================
load        (none)              exec
exec        load                store
store       exec                (none)
==========  ==================  ==================

Naming a neighbour that does not exist is an illegal instruction.
"""

from dataclasses import dataclass
from enum import IntEnum


__all__ = [
    "INSTR_BITS", "INSTR_BYTES", "Field", "Instruction", "INSTRUCTIONS", "BY_OPCODE", "Opcode",
    "Queue", "LoadDst", "Dataflow", "ErrorCause", "IllegalInstruction", "encode", "decode",
    "to_bytes", "from_bytes", "markdown_table", "QPARAM_SLOTS", "QPARAM_KINDS", "TOKEN_MAX",
]

INSTR_BITS = 128
INSTR_BYTES = INSTR_BITS // 8

QPARAM_KINDS = ("bias", "multiplier", "shift")
QPARAM_SLOTS = 2
TOKEN_MAX = 255  # dependency-token counters are 8 bits; a push beyond this is an error


class Opcode(IntEnum):
    LOAD = 1
    STORE = 2
    CONFIG = 3
    PRELOAD = 4
    MATMUL = 5
    FENCE = 6
    HALT = 7


class Queue(IntEnum):
    LOAD = 0
    EXEC = 1
    STORE = 2
    CONTROL = 3  # FENCE / HALT, handled by the dispatcher


class LoadDst(IntEnum):
    SP = 0       # scratchpad rows of Config.sp_row_elems int8 elements
    ACC = 1      # accumulator rows of Config.cols int32 elements
    QPARAM = 2   # quantisation-parameter rows of Config.cols int32 elements


class Dataflow(IntEnum):
    WS = 0
    OS = 1


class ErrorCause(IntEnum):
    """Value of the ERR_CAUSE register and of :attr:`MachineError.cause`."""
    NONE = 0
    ILLEGAL_INSTRUCTION = 1
    DMA_WINDOW = 2        # a DRAM address outside the window [DRAM_BASE, DRAM_BASE+DRAM_SIZE)
    DMA_SLVERR = 3
    DMA_DECERR = 4
    TOKEN_DEADLOCK = 5    # a queue waits for a token that can never arrive
    TOKEN_OVERFLOW = 6    # a push beyond TOKEN_MAX
    WATCHDOG = 7          # a bus transfer made no progress for WATCHDOG cycles
    ABORTED = 8           # the host aborted the program


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int
    signed: bool = False
    doc: str = ""

    @property
    def mask(self):
        return ((1 << self.width) - 1) << self.lsb

    @property
    def min(self):
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max(self):
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1


HEADER = (
    Field("opcode", 0, 4, doc="operation"),
    Field("pop_prev", 4, 1, doc="wait for and take a token from the previous queue first"),
    Field("pop_next", 5, 1, doc="wait for and take a token from the next queue first"),
    Field("push_prev", 6, 1, doc="give a token to the previous queue when done"),
    Field("push_next", 7, 1, doc="give a token to the next queue when done"),
)


@dataclass(frozen=True)
class Instruction:
    name: str
    opcode: Opcode
    queue: Queue
    fields: tuple
    doc: str

    @property
    def all_fields(self):
        return HEADER + self.fields

    @property
    def reserved_mask(self):
        used = 0
        for f in self.all_fields:
            used |= f.mask
        return ((1 << INSTR_BITS) - 1) & ~used

    def field(self, name):
        for f in self.all_fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")


_DRAM = (
    Field("rows", 32, 16, doc="rows to transfer (>= 1)"),
    Field("row_elems", 48, 16, doc="elements per row (>= 1, <= the local row width)"),
    Field("dram_addr", 64, 32, doc="byte address of the first row in DRAM"),
    Field("dram_stride", 96, 32, doc="bytes from one DRAM row to the next"),
)

INSTRUCTIONS = {
    "LOAD": Instruction("LOAD", Opcode.LOAD, Queue.LOAD, (
        Field("dst", 8, 2, doc="0 scratchpad, 1 accumulator, 2 quantisation parameters"),
        Field("local_addr", 10, 20, doc="first local row written"),
    ) + _DRAM, "DRAM -> local rows (2D); elements past row_elems in each row are zeroed"),
    "STORE": Instruction("STORE", Opcode.STORE, Queue.STORE, (
        Field("acc_addr", 8, 20, doc="first accumulator row read"),
        Field("out_int32", 28, 1, doc="1: store int32 (acc + bias), 0: requantised int8"),
        Field("qslot", 29, 1, doc="quantisation-parameter slot used for per-column values"),
    ) + _DRAM, "accumulator rows -> output pipeline -> DRAM (2D)"),
    "CONFIG": Instruction("CONFIG", Opcode.CONFIG, Queue.STORE, (
        Field("shift", 8, 5, doc="requantisation right shift (per tensor)"),
        Field("per_column", 13, 1, doc="1: multiplier and shift from the qparam slot"),
        Field("bias_en", 14, 1, doc="1: add the bias row of the qparam slot"),
        Field("zero_point", 16, 16, signed=True, doc="output zero point"),
        Field("multiplier", 32, 32, signed=True, doc="requantisation multiplier M0 (per tensor)"),
        Field("clamp_lo", 64, 16, signed=True, doc="lowest output value"),
        Field("clamp_hi", 80, 16, signed=True, doc="highest output value"),
    ), "set the output pipeline for the STOREs that follow"),
    "PRELOAD": Instruction("PRELOAD", Opcode.PRELOAD, Queue.EXEC, (
        Field("sp_addr", 8, 20, doc="scratchpad row of weight row 0"),
        Field("k_rows", 32, 16, doc="weight rows (1..rows); array rows past k_rows get zeros"),
    ), "weight-stationary: shift a rows x cols weight tile into the shadow weight buffer"),
    "MATMUL": Instruction("MATMUL", Opcode.MATMUL, Queue.EXEC, (
        Field("dataflow", 8, 1, doc="0 weight-stationary, 1 output-stationary"),
        Field("accumulate", 9, 1, doc="1: add to the accumulator rows, 0: overwrite them"),
        Field("a_addr", 12, 20, doc="scratchpad row of the first activation row"),
        Field("b_addr", 32, 20, doc="OS: scratchpad row of the first weight row"),
        Field("acc_addr", 52, 20, doc="first accumulator row written"),
        Field("count", 96, 16, doc="WS: activation rows M; OS: reduction steps K (>= 1)"),
    ), "multiply; WS uses the tile of the PRELOAD just before it"),
    "FENCE": Instruction("FENCE", Opcode.FENCE, Queue.CONTROL, (),
                         "wait until every queue is empty and idle"),
    "HALT": Instruction("HALT", Opcode.HALT, Queue.CONTROL, (),
                        "wait until every queue is idle, then signal done"),
}

BY_OPCODE = {int(i.opcode): i for i in INSTRUCTIONS.values()}


class IllegalInstruction(ValueError):
    pass


def encode(name, **values):
    """Assemble one instruction into a 128-bit integer; unnamed fields are zero."""
    try:
        instr = INSTRUCTIONS[name]
    except KeyError:
        raise IllegalInstruction(f"unknown instruction {name!r}") from None
    word = int(instr.opcode)
    for key, value in values.items():
        if key == "opcode":
            raise IllegalInstruction("the opcode is given by the instruction name")
        try:
            f = instr.field(key)
        except KeyError as e:
            raise IllegalInstruction(e.args[0]) from None
        value = int(value)
        if not f.min <= value <= f.max:
            raise IllegalInstruction(f"{name}.{key}={value} is outside {f.min}..{f.max}")
        word |= (value & ((1 << f.width) - 1)) << f.lsb
    return word


def decode(word):
    """Split a 128-bit instruction into ``(Instruction, {field: value})``.

    Raises :class:`IllegalInstruction` for an unknown opcode or a set reserved bit; the checks
    that need the Config or machine state (ranges, dataflows, token neighbours) are the
    executor's.
    """
    opcode = word & 0xF
    instr = BY_OPCODE.get(opcode)
    if instr is None:
        raise IllegalInstruction(f"opcode {opcode} is not defined")
    if word & instr.reserved_mask:
        raise IllegalInstruction(f"{instr.name} has reserved bits set")
    values = {}
    for f in instr.all_fields:
        raw = (word >> f.lsb) & ((1 << f.width) - 1)
        if f.signed and raw >> (f.width - 1):
            raw -= 1 << f.width
        values[f.name] = raw
    return instr, values


def markdown_table():
    """The ISA as a Markdown table (README), generated from :data:`INSTRUCTIONS`."""
    lines = ["| instruction | opcode | queue | fields (bits) | meaning |",
             "|---|---|---|---|---|"]
    for instr in INSTRUCTIONS.values():
        fields = ", ".join(
            f"`{f.name}` [{f.lsb + f.width - 1}:{f.lsb}]" if f.width > 1 else f"`{f.name}` [{f.lsb}]"
            for f in instr.fields) or "-"
        lines.append(f"| {instr.name} | {int(instr.opcode)} | {instr.queue.name.lower()} "
                     f"| {fields} | {instr.doc} |")
    return "\n".join(lines)


def to_bytes(words):
    return b"".join(int(w).to_bytes(INSTR_BYTES, "little") for w in words)


def from_bytes(data):
    if len(data) % INSTR_BYTES:
        raise ValueError(f"a program is a multiple of {INSTR_BYTES} bytes")
    return [int.from_bytes(data[i:i + INSTR_BYTES], "little")
            for i in range(0, len(data), INSTR_BYTES)]
