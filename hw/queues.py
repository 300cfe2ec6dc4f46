"""What the controller and the three execution units (load, exec, store) exchange."""

from amaranth.hdl import Cat, Const, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sw import isa
from sw.isa import ErrorCause


__all__ = ["PC_WIDTH", "command_layout", "CommandPacking", "error_layout", "UnitPort",
           "hold_instruction", "complete_or_fault"]

PC_WIDTH = 32


def command_layout():
    """One dispatched instruction: the word and its index in the program."""
    return data.StructLayout({"word": unsigned(isa.INSTR_BITS), "pc": unsigned(PC_WIDTH)})


class CommandPacking:
    """A command held in fewer bits: the word bits outside ``mask`` are 0 and those in
    ``ones`` are 1 in every command of a queue (:func:`hw.decoder.legal_bits`), so only the
    others and the pc are stored.

    ``width`` bits; :meth:`pack` a :func:`command_layout` value, :meth:`unpack` it back.
    """

    def __init__(self, mask, ones):
        self._stored = [bit for bit in range(isa.INSTR_BITS) if (mask & ~ones) >> bit & 1]
        self._ones = ones
        self.width = len(self._stored) + PC_WIDTH

    def pack(self, command):
        return Cat(*(command.word[bit] for bit in self._stored), command.pc)

    def unpack(self, packed):
        """The :func:`command_layout` value of ``packed``."""
        bits = [Const(self._ones >> bit & 1, 1) for bit in range(isa.INSTR_BITS)]
        for index, bit in enumerate(self._stored):
            bits[bit] = packed[index]
        return Cat(*bits, packed[len(self._stored):])


def error_layout(addr_width):
    return data.StructLayout({
        "cause": ErrorCause, "pc": unsigned(PC_WIDTH), "addr": unsigned(addr_width)})


class UnitPort(wiring.Signature):
    """A unit's side of its connection to the controller (unit = master).

    Starting an instruction: the unit holds ``request`` with the instruction's ``pop_prev`` /
    ``pop_next`` flags and its ``pc``; in a cycle where the tokens are there and ``stop`` is
    low the controller answers ``grant`` and takes them. Completing it: one-cycle
    ``push_prev`` / ``push_next`` pulses with ``push_pc``. ``executing`` is high while an
    instruction was granted and has not completed (what a drain waits for); a unit with
    ``request`` high and no ``grant`` is waiting for a token. ``error`` reports a fault of
    the instruction ``error.pc`` (one cycle; the controller keeps the first).
    """

    def __init__(self, addr_width):
        super().__init__({
            "request": Out(1),
            "pop_prev": Out(1),
            "pop_next": Out(1),
            "pc": Out(PC_WIDTH),
            "grant": In(1),
            "stop": In(1),
            "push_prev": Out(1),
            "push_next": Out(1),
            "push_pc": Out(PC_WIDTH),
            "executing": Out(1),
            "error_valid": Out(1),
            "error": Out(error_layout(addr_width)),
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
