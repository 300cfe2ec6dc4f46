"""The control/status register block: an AXI4-Lite slave generated from :mod:`hw.regmap`."""

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import regmap
from .axi import AXI4LiteSignature, AxiResp
from .config import Config


__all__ = ["Registers", "register_layout", "port_name", "set_port_name"]


def register_layout(reg):
    """The fields of ``reg`` at their bit positions (the shape of its hardware port)."""
    return data.FlexibleLayout(reg.width, {
        f.name: data.Field(unsigned(f.width), f.lsb) for f in reg.fields})


def port_name(reg):
    return reg.name.lower()


def set_port_name(reg):
    return f"{reg.name.lower()}_set"


def _strobe_mask(strb, lane_bits):
    """Bit mask of the bytes ``strb`` enables."""
    return Cat(bit.replicate(lane_bits) for bit in strb)


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
                    bytes written (``rw``), cleared (``w1c``) or pulsed (``cmd``).
      <name>        one per register, lower-case name, shaped by :func:`register_layout`
                    (``regs.status.busy``); also ``regs.port("STATUS")``:
                      rw    Out: the stored value.
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
            layout = register_layout(reg)
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
                stored[reg.name] = Signal(reg.width, init=self._reset[reg.name],
                                          name=f"{port_name(reg)}_q")
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

        with m.If(write):
            m.d.sync += b_valid.eq(1)
            with m.Switch(bus.awaddr[word_lsb:]):
                for reg in self._registers:
                    with m.Case(reg.offset >> word_lsb):
                        written = (w_data & strobe & reg.mask)[:reg.width]
                        if reg.access == "rw":
                            self._write_lanes(m, reg, stored[reg.name], w_data, w_strb)
                            m.d.sync += b_resp.eq(AxiResp.OKAY)
                        elif reg.access == "w1c":
                            m.d.comb += clear[reg.name].eq(written)
                            m.d.sync += b_resp.eq(AxiResp.OKAY)
                        elif reg.access == "cmd":
                            m.d.sync += [pulse[reg.name].eq(written), b_resp.eq(AxiResp.OKAY)]
                        else:
                            m.d.sync += b_resp.eq(AxiResp.SLVERR)
                with m.Default():
                    m.d.sync += b_resp.eq(AxiResp.SLVERR)

        for name, bits in clear.items():
            # A hardware event in the cycle software clears its bit must not be lost.
            m.d.sync += stored[name].eq((stored[name] & ~bits) | self.set_port(name).as_value())

    @staticmethod
    def _write_lanes(m, reg, value, w_data, w_strb):
        """``value``'s field bits take ``w_data`` in the byte lanes ``w_strb`` enables: each
        lane is a flip-flop enable, so the written bits need no mux."""
        lane_bits = len(w_data) // len(w_strb)
        for bit in range(reg.width):
            if reg.mask >> bit & 1:
                with m.If(w_strb[bit // lane_bits]):
                    m.d.sync += value[bit].eq(w_data[bit])

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
        # LUT per value (and the decodes are shared by all 32 bits). The map is dense, so the
        # decodes compare only the low index bits, and a window check covers the rest.
        index = bus.araddr[word_lsb:]
        slots = max(1, (max(reg.offset for reg in self._registers) >> word_lsb) + 1)
        index_bits = max(1, (slots - 1).bit_length())
        in_window = index[index_bits:] == 0 if len(index) > index_bits else Const(1)
        read_data = Const(0, regmap.REG_BITS)
        mapped = 0
        for reg in self._registers:
            slot = reg.offset >> word_lsb
            selected = in_window & (index[:index_bits] == slot)
            read_data = read_data | Mux(selected, self._read_value(reg, stored), 0)
            mapped |= 1 << slot
        hit = in_window & Const(mapped, 1 << index_bits).bit_select(index[:index_bits], 1)
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
