"""What the controller and the three execution units (load, exec, store) exchange."""

from amaranth.hdl import Cat, Const, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from sw import isa
from sw.isa import ErrorCause


__all__ = ["pc_width", "command_layout", "CommandPacking", "error_layout",
           "UnitPort", "hold_instruction", "complete_or_fault"]


def pc_width(cfg):
    """Bits of an instruction index (pc) inside the machine.

    Instruction ``pc`` is the row at ``base + 16*pc`` (modulo ``2**addr_width``). Its fetch
    faults unless the row lies below ``2**addr_width`` and in the DRAM window, whose size is
    below ``2**addr_width``: no window holds both the last row of the address space and the
    one that wraps to address 0, so every pc the machine reaches (executed, faulting, or the
    fetch-fault marker) is at most ``2**(addr_width - 4)``, which needs ``addr_width - 3``
    bits. The host's PROG_COUNT, PC and ERR_PC stay 32-bit: a count past what the address
    space holds is saturated to the largest pc when written (a WARL register, see
    hw/regmap.py; the same fetch fault ends the program first), and PC / ERR_PC read
    zero-extended."""
    return cfg.addr_width - exact_log2(isa.INSTR_BYTES) + 1


def command_layout(cfg):
    """One dispatched instruction: the word and its index in the program."""
    return data.StructLayout({"word": unsigned(isa.INSTR_BITS), "pc": unsigned(pc_width(cfg))})


class CommandPacking:
    """A command held in fewer bits: the word bits outside ``mask`` are 0 and those in
    ``ones`` are 1 in every command of a queue (:func:`hw.decoder.legal_bits`), so only the
    others and the pc are stored.

    ``width`` bits (``pc_width`` of them the pc); :meth:`pack` a :func:`command_layout`
    value, :meth:`unpack` it back.
    """

    def __init__(self, mask, ones, pc_width):
        self._stored = [bit for bit in range(isa.INSTR_BITS) if (mask & ~ones) >> bit & 1]
        self._ones = ones
        self.width = len(self._stored) + pc_width

    def pack(self, command):
        return Cat(*(command.word[bit] for bit in self._stored), command.pc)

    def unpack(self, packed):
        """The :func:`command_layout` value of ``packed``."""
        bits = [Const(self._ones >> bit & 1, 1) for bit in range(isa.INSTR_BITS)]
        for index, bit in enumerate(self._stored):
            bits[bit] = packed[index]
        return Cat(*bits, packed[len(self._stored):])


class UnitCommand:
    """The instruction a unit runs, from its queue's ``head`` (a stream of
    :func:`command_layout`).

    With ``cfg.unit_commands == "copy"`` (:attr:`copy`) the unit takes the head as it starts
    and holds it in the bits ``mask`` / ``ones`` leave (:class:`CommandPacking`); with
    ``"queue"`` the head stays in the queue until the unit takes it when done.
    :attr:`command` is the :func:`command_layout` value the unit runs.
    """

    def __init__(self, cfg, head, mask, ones):
        self.copy = cfg.unit_commands == "copy"
        self._head = head
        if self.copy:
            self._packing = CommandPacking(mask, ones, pc_width(cfg))
            self._held = Signal(self._packing.width, name="held")
            self.command = data.View(command_layout(cfg), self._packing.unpack(self._held))
        else:
            self.command = head.payload

    def start(self, m):
        """In the cycle the unit starts on a valid head: take it, if the unit copies."""
        if self.copy:
            m.d.comb += self._head.ready.eq(1)
            m.d.sync += self._held.eq(self._packing.pack(self._head.payload))


def error_layout(cfg):
    return data.StructLayout({
        "cause": ErrorCause, "pc": unsigned(pc_width(cfg)), "addr": unsigned(cfg.addr_width)})


class UnitPort(wiring.Signature):
    """A unit's side of its connection to the controller (unit = master).

    Starting an instruction: the unit holds ``request`` with the instruction's ``pop_prev`` /
    ``pop_next`` flags and its ``pc``; in a cycle where the tokens are there and ``stop`` is
    low the controller answers ``grant`` and takes them. Completing it: one-cycle
    ``push_prev`` / ``push_next`` pulses with ``push_pc``. ``executing`` is high while an
    instruction was granted and has not completed, the cycle of its completion or fault
    included (a unit that completes an instruction in the cycle of its grant holds
    ``request`` then): what a drain waits for. A unit with ``request`` high and no ``grant``
    is waiting for a token. ``error`` reports a fault of the instruction ``error.pc`` (one
    cycle; the controller keeps the first).
    """

    def __init__(self, cfg):
        super().__init__({
            "request": Out(1),
            "pop_prev": Out(1),
            "pop_next": Out(1),
            "pc": Out(pc_width(cfg)),
            "grant": In(1),
            "stop": In(1),
            "push_prev": Out(1),
            "push_next": Out(1),
            "push_pc": Out(pc_width(cfg)),
            "executing": Out(1),
            "error_valid": Out(1),
            "error": Out(error_layout(cfg)),
        })


def hold_instruction(m, ctrl, instr, pc):
    """Drive a :class:`UnitPort` ``ctrl`` from the instruction ``instr`` (at ``pc``) that a
    unit executing one instruction at a time holds: its pops, and its pc for the request,
    the completion and a fault."""
    m.d.comb += [
        ctrl.pc.eq(pc),
        ctrl.pop_prev.eq(instr.pop_prev),
        ctrl.pop_next.eq(instr.pop_next),
        ctrl.push_pc.eq(pc),
        ctrl.error.pc.eq(pc),
    ]


def complete_or_fault(m, ctrl, instr, status):
    """In the cycle a DMA ``status`` payload for ``instr`` is taken: push the instruction's
    tokens if it succeeded, else report its cause and address as the unit's fault."""
    with m.If(status.cause == ErrorCause.NONE):
        m.d.comb += [ctrl.push_prev.eq(instr.push_prev), ctrl.push_next.eq(instr.push_next)]
    with m.Else():
        m.d.comb += [ctrl.error_valid.eq(1), ctrl.error.cause.eq(status.cause),
                     ctrl.error.addr.eq(status.addr)]
