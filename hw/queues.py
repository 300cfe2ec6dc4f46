"""What the controller and the three execution units (load, exec, store) exchange."""

from amaranth.hdl import unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from sw import isa
from sw.isa import ErrorCause


__all__ = ["PC_WIDTH", "command_layout", "error_layout", "UnitPort"]

PC_WIDTH = 32


def command_layout():
    """One dispatched instruction: the word and its index in the program."""
    return data.StructLayout({"word": unsigned(isa.INSTR_BITS), "pc": unsigned(PC_WIDTH)})


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
