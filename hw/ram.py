"""Block-RAM read registers: the register after an asynchronous memory read port that yosys
folds into the block RAM's own output register (:func:`registered_read`).

For yosys to fold it without adding logic, the register has no reset (a block RAM's output
register has none on iCE40) and no initial value: Amaranth gives every register one, so the
register carries the wire attribute :data:`RAM_READ_ATTR`, and the board builds remove its
``init`` before synthesis (:data:`UNSET_RAM_READ_INIT`). Otherwise yosys emulates the power-up
value with a flip-flop and an AND gate per bit. Every user of such a register reads it only
after loading it, so its power-up value is never seen (and simulation starts it at 0).
"""

from amaranth.hdl import Signal


__all__ = ["RAM_READ_ATTR", "UNSET_RAM_READ_INIT", "registered_read"]

RAM_READ_ATTR = "tc_ram_read_register"
#: yosys command (after reading the design) that drops those registers' initial values.
UNSET_RAM_READ_INIT = f"setattr -unset init a:{RAM_READ_ATTR}"


def registered_read(m, port, en, *, name):
    """The read register of the asynchronous read port ``port`` (``domain="comb"``): it
    takes ``port.data`` in the cycles ``en`` is high, and nothing else. Returns it."""
    data = Signal.like(port.data, name=name, reset_less=True, attrs={RAM_READ_ATTR: 1})
    with m.If(en):
        m.d.sync += data.eq(port.data)
    return data
