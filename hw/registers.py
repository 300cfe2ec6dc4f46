"""The control/status register block: an AXI4-Lite slave generated from :mod:`hw.regmap`."""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import regmap
from .axi import AXI4LiteSignature, AxiResp
from .config import Config


__all__ = ["Registers", "register_layout", "port_name", "set_port_name"]

# Inputs of a LUT (iCE40 and ECP5): the widest address decode that costs one.
_LUT_INPUTS = 4


def register_layout(reg, cfg):
    """The fields of ``reg`` at their bit positions (the shape of its hardware port); a WARL
    register's one field is as wide as its legal values."""
    legal = reg.legal(cfg)
    if legal is not None:
        (field,) = reg.fields
        return data.FlexibleLayout(legal.bits, {field.name: data.Field(unsigned(legal.bits), 0)})
    return data.FlexibleLayout(reg.width, {
        f.name: data.Field(unsigned(f.width), f.lsb) for f in reg.fields})


def port_name(reg):
    return reg.name.lower()


def set_port_name(reg):
    return f"{reg.name.lower()}_set"


def _strobe_mask(strb, lane_bits):
    """Bit mask of the bytes ``strb`` enables."""
    return Cat(bit.replicate(lane_bits) for bit in strb)


class _SlotDecoder:
    """Address decodes of the register slots for the word index ``index``.

    A decode compares the low ``_LUT_INPUTS`` index bits, one LUT shared by all the bits
    it gates; a group of ``2**_LUT_INPUTS`` slots is selected by the other index bits. The
    map is dense, so a window check covers the index bits above it. (Comparing every index
    bit in each decode makes it wider than a LUT: on the iCE40 the register block took 40
    LUTs more.)
    """

    _word_lsb = (regmap.REG_BYTES - 1).bit_length()

    def __init__(self, registers, index):
        slots = max(1, (max(reg.offset for reg in registers) >> self._word_lsb) + 1)
        self._index_bits = max(1, (slots - 1).bit_length())
        self._low_bits = min(self._index_bits, _LUT_INPUTS)
        self._index = index
        self._in_window = (index[self._index_bits:] == 0 if len(index) > self._index_bits
                           else Const(1))
        self.groups = {}
        for reg in registers:
            self.groups.setdefault(self._slot(reg) >> self._low_bits, []).append(reg)

    def _slot(self, reg):
        return reg.offset >> self._word_lsb

    def low_selects(self, reg):
        """The low index bits are ``reg``'s (only meaningful with its group selected)."""
        return self._index[:self._low_bits] == self._slot(reg) % (1 << self._low_bits)

    def group_selects(self, group):
        return self._in_window & (self._index[self._low_bits:self._index_bits] == group)

    def selects(self, reg):
        return self.low_selects(reg) & self.group_selects(self._slot(reg) >> self._low_bits)

    def hit(self, registers):
        """``index`` is the slot of one of ``registers``."""
        slots = sum(1 << self._slot(reg) for reg in registers)
        return self._in_window & Const(slots, 1 << self._index_bits).bit_select(
            self._index[:self._index_bits], 1)


class Registers(wiring.Component):
    """The register map of :mod:`hw.regmap` behind an AXI4-Lite slave.

    Ports
      s_axil        In(AXI4LiteSignature(regmap.ADDR_WIDTH, 32)): byte addresses, the low
                    two bits ignored. One write and one read in flight at a time (they run
                    concurrently); AW and W are accepted together, once both are valid (the
                    master must not wait for AWREADY before raising WVALID, nor for WREADY
                    before AWVALID, as AXI requires); B and R are held until accepted.
                    Unmapped addresses and writes to ``const`` or ``ro`` registers answer
                    SLVERR and change nothing (unmapped reads return 0). WSTRB selects the
                    bytes written (``rw``), cleared (``w1c``) or pulsed (``cmd``). A WARL
                    register (:class:`hw.regmap.Legal`) takes the legal value of the word
                    its written bytes make with the value it holds.
      <name>        one per register, lower-case name, shaped by :func:`register_layout`
                    (``regs.status.busy``); also ``regs.port("STATUS")``:
                      rw    Out: the stored value (a WARL one: its legal value, narrower).
                      ro    In: read by the bus.
                      cmd   Out: the written 1 bits for exactly one cycle.
                      w1c   Out: the sticky bits.
                      const none (the value derives from ``cfg``).
      <name>_set    w1c only, In: a 1 sets the bit the next cycle (``regs.set_port(name)``);
                    a set wins over a clear in the same cycle.

    Latency
      Read: R is valid the cycle after AR is accepted, with ``ro`` inputs sampled in the
      AR cycle. Write: the register is written in the cycle AW and W are accepted; B, the
      new ``rw`` / ``w1c`` value and the ``cmd`` pulse appear the cycle after.

    Throughput
      One read and one write every 2 cycles (with R / B accepted at once).
    """

    def __init__(self, cfg, registers=None):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a hw.config.Config, not {cfg!r}")
        registers = regmap.REGISTERS if registers is None else list(registers)
        for reg in registers:
            if reg.access not in regmap.ACCESS_KINDS:
                raise ValueError(f"registers: {reg.name}.access={reg.access!r} is not one of"
                                 f" {regmap.ACCESS_KINDS}")
            if reg.offset % regmap.REG_BYTES or reg.offset >= 1 << regmap.ADDR_WIDTH:
                raise ValueError(f"registers: {reg.name}.offset={reg.offset:#x} must be a"
                                 f" multiple of {regmap.REG_BYTES} below"
                                 f" {1 << regmap.ADDR_WIDTH:#x}")
        self._cfg = cfg
        self._registers = registers
        # Evaluated now so a Config whose values do not fit the map fails here, not mid-build.
        self._reset = {reg.name: reg.reset_value(cfg) for reg in registers}

        members = {"s_axil": In(AXI4LiteSignature(regmap.ADDR_WIDTH, regmap.REG_BITS))}
        for reg in registers:
            layout = register_layout(reg, cfg)
            if reg.access == "ro":
                members[port_name(reg)] = In(layout)
            elif reg.access in ("rw", "cmd", "w1c"):
                members[port_name(reg)] = Out(layout)
            if reg.access == "w1c":
                members[set_port_name(reg)] = In(layout)
        super().__init__(members)

    @property
    def registers(self):
        return self._registers

    def port(self, name):
        """The port of register ``name`` (upper or lower case)."""
        reg = self._register(name)
        if reg.access == "const":
            raise KeyError(f"register {reg.name} is const: it has no port")
        return getattr(self, port_name(reg))

    def set_port(self, name):
        """The set-pulse input of the ``w1c`` register ``name``."""
        reg = self._register(name)
        if reg.access != "w1c":
            raise KeyError(f"register {reg.name} is {reg.access}, not w1c: it has no set port")
        return getattr(self, set_port_name(reg))

    def _register(self, name):
        for reg in self._registers:
            if reg.name == name.upper():
                return reg
        raise KeyError(f"no register named {name!r}")

    def elaborate(self, platform):
        m = Module()
        stored = {}
        for reg in self._registers:
            if reg.access in ("rw", "w1c"):
                stored[reg.name] = Signal(len(self.port(reg.name).as_value()),
                                          init=self._reset[reg.name], name=f"{port_name(reg)}_q")
                m.d.comb += self.port(reg.name).eq(stored[reg.name])
        self._write_path(m, stored)
        self._read_path(m, stored)
        return m

    def _write_path(self, m, stored):
        bus = self.s_axil
        word_lsb = (regmap.REG_BYTES - 1).bit_length()
        b_valid = Signal()
        b_resp = Signal.like(bus.bresp)
        # AW and W are taken together (a slave may wait for both VALIDs before raising either
        # READY), and only while no response waits: the write is performed from the bus in
        # its handshake cycle, so neither the address nor the data is copied.
        write = Signal()
        m.d.comb += [
            write.eq(bus.awvalid & bus.wvalid & ~b_valid),
            bus.awready.eq(write),
            bus.wready.eq(write),
            bus.bvalid.eq(b_valid),
            bus.bresp.eq(b_resp),
        ]
        with m.If(b_valid & bus.bready):
            m.d.sync += b_valid.eq(0)

        w_data, w_strb = bus.wdata, bus.wstrb
        strobe = _strobe_mask(w_strb, len(w_data) // len(w_strb))
        clear = {reg.name: Signal(reg.width, name=f"{port_name(reg)}_clear")
                 for reg in self._registers if reg.access == "w1c"}
        pulse = {reg.name: Signal(reg.width, name=f"{port_name(reg)}_pulse")
                 for reg in self._registers if reg.access == "cmd"}
        for reg in self._registers:
            if reg.access == "cmd":
                m.d.sync += pulse[reg.name].eq(0)
                m.d.comb += self.port(reg.name).eq(pulse[reg.name])

        decoder = _SlotDecoder(self._registers, bus.awaddr[word_lsb:])
        writable = [reg for reg in self._registers if reg.access in regmap.WRITABLE]
        with m.If(write):
            m.d.sync += [b_valid.eq(1),
                         b_resp.eq(Mux(decoder.hit(writable), AxiResp.OKAY, AxiResp.SLVERR))]
            for reg in writable:
                with m.If(decoder.selects(reg)):
                    written = (w_data & strobe & reg.mask)[:reg.width]
                    if reg.access == "rw":
                        self._write_rw(m, reg, stored[reg.name], w_data, w_strb)
                    elif reg.access == "w1c":
                        m.d.comb += clear[reg.name].eq(written)
                    else:
                        m.d.sync += pulse[reg.name].eq(written)

        for name, bits in clear.items():
            # A hardware event in the cycle software clears its bit must not be lost.
            m.d.sync += stored[name].eq((stored[name] & ~bits) | self.set_port(name).as_value())

    def _write_rw(self, m, reg, value, w_data, w_strb):
        """``value`` takes the word that the ``w_data`` bytes ``w_strb`` enables make with
        its other bytes, made legal (:meth:`hw.regmap.Register.legal_value`): a wrapping WARL
        register keeps its low bits, a word above a clamping one's limit becomes the limit.
        Unless it is clamped, a bit needs no mux: its lane's strobe is a flip-flop enable.
        Clamped, each bit is one LUT (strobe, data, old bit, above) feeding its flip-flop:
        they share a cell."""
        lane_bits = len(w_data) // len(w_strb)
        word = Cat(Mux(w_strb[bit // lane_bits], w_data[bit],
                       value[bit] if bit < len(value) else 0)
                   for bit in range(len(w_data))) & reg.mask
        legal = reg.legal(self._cfg)
        if legal is not None and not legal.wrap:
            word = Mux(word[legal.above_from:].any(), legal.limit, word)
        m.d.sync += value.eq(word)

    def _read_path(self, m, stored):
        bus = self.s_axil
        word_lsb = (regmap.REG_BYTES - 1).bit_length()
        r_valid = Signal()
        r_data = Signal.like(bus.rdata)
        r_resp = Signal.like(bus.rresp)
        m.d.comb += [
            bus.arready.eq(~r_valid),
            bus.rvalid.eq(r_valid),
            bus.rdata.eq(r_data),
            bus.rresp.eq(r_resp),
        ]
        with m.If(r_valid & bus.rready):
            m.d.sync += r_valid.eq(0)
        # The read data is the OR of every register's value gated by its address decode: each
        # 4-input LUT merges two gated values, where a mux tree over the index bits needs one
        # LUT per value (and the decodes are shared by all 32 bits). The registers of a group
        # are merged so under their low-bit decodes, then the groups under theirs.
        decoder = _SlotDecoder(self._registers, bus.araddr[word_lsb:])
        read_data = Const(0, regmap.REG_BITS)
        for group, members in decoder.groups.items():
            group_data = Const(0, regmap.REG_BITS)
            for reg in members:
                group_data = group_data | Mux(decoder.low_selects(reg),
                                              self._read_value(reg, stored), 0)
            read_data = read_data | Mux(decoder.group_selects(group), group_data, 0)
        hit = decoder.hit(self._registers)
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [r_valid.eq(1), r_data.eq(read_data),
                         r_resp.eq(Mux(hit, AxiResp.OKAY, AxiResp.SLVERR))]

    def _read_value(self, reg, stored):
        if reg.access == "const":
            return Const(self._reset[reg.name], regmap.REG_BITS)
        if reg.access == "ro":
            return self.port(reg.name).as_value() & reg.mask
        if reg.access in ("rw", "w1c"):
            return stored[reg.name]
        return Const(0, regmap.REG_BITS)
