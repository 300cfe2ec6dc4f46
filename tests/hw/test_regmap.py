import pytest

from hw import regmap
from hw.config import Config
from sw.isa import ErrorCause


def test_names_are_unique():
    names = [reg.name for reg in regmap.REGISTERS]
    assert len(names) == len(set(names))


def test_offsets_are_unique_aligned_and_fit_the_window():
    offsets = [reg.offset for reg in regmap.REGISTERS]
    assert len(offsets) == len(set(offsets))
    assert all(offset % regmap.REG_BYTES == 0 for offset in offsets)
    assert max(offsets) + regmap.REG_BYTES <= 1 << regmap.ADDR_WIDTH


@pytest.mark.parametrize("reg", regmap.REGISTERS, ids=lambda reg: reg.name)
def test_fields_fit_32_bits_without_overlap(reg):
    assert reg.access in regmap.ACCESS_KINDS
    assert reg.fields, "every register has at least one field"
    names = [f.name for f in reg.fields]
    assert len(names) == len(set(names))
    used = 0
    for f in reg.fields:
        assert f.width >= 1 and f.lsb >= 0 and f.msb < regmap.REG_BITS, f.name
        assert not used & f.mask, f"{reg.name}.{f.name} overlaps another field"
        used |= f.mask
    assert (reg.value is not None) == (reg.access == "const")


def test_required_registers_are_present():
    for name in ["ID", "VERSION", "CONFIG_ARRAY", "CONFIG_WIDTHS", "CONFIG_SP_ROWS",
                 "CONFIG_SP_BANKS", "CONFIG_ACC_ROWS", "CONFIG_BUS", "CTRL", "STATUS",
                 "ERR_CAUSE", "ERR_PC", "ERR_ADDR", "PROG_BASE", "PROG_COUNT", "DRAM_BASE",
                 "DRAM_SIZE", "IRQ_ENABLE", "IRQ_STATUS", "PERF_CYCLES", "PERF_BUSY_LOAD",
                 "PERF_BUSY_EXEC", "PERF_BUSY_STORE", "PERF_STALL", "PERF_DMA_RD_BYTES",
                 "PERF_DMA_WR_BYTES", "WATCHDOG", "PC"]:
        reg = regmap.by_name(name)
        assert getattr(regmap.ADDR, name) == reg.offset == regmap.OFFSETS[name]
    with pytest.raises(KeyError, match="NOPE"):
        regmap.by_name("NOPE")


def test_err_cause_holds_every_error_cause():
    assert max(ErrorCause) < 1 << regmap.FIELDS.ERR_CAUSE.cause.width


def test_const_values_describe_the_config():
    cfg = Config(rows=8, cols=4, dataflow="ws", input_width=6, weight_width=4, acc_width=20,
                 output_width=7, scratchpad_kib=16, scratchpad_banks=8, accumulator_kib=2,
                 dma_data_width=32, max_burst_beats=256, max_outstanding=16)
    words = regmap.const_values(cfg)
    assert set(words) == {reg.name for reg in regmap.REGISTERS if reg.access == "const"}
    fields = {name: regmap.by_name(name).unpack(word) for name, word in words.items()}
    assert words["ID"] == 0x54435247 and words["ID"].to_bytes(4, "big") == b"TCRG"
    assert fields["CONFIG_ARRAY"] == {"rows": 8, "cols": 4}
    assert fields["CONFIG_WIDTHS"] == {"input": 6, "weight": 4, "acc": 20, "output": 7,
                                       "ws": 1, "os": 0}
    assert fields["CONFIG_SP_ROWS"] == {"rows": 16 * 1024 // 8}
    assert fields["CONFIG_SP_BANKS"] == {"banks": 8, "row_bytes": 8}
    assert fields["CONFIG_ACC_ROWS"] == {"rows": 2 * 1024 // 16}
    assert fields["CONFIG_BUS"] == {"data_bytes": 4, "max_burst": 256, "outstanding": 16}


def test_reset_values_follow_the_config():
    cfg = Config(dram_base=0x8000_0000, dram_size=0x1000_0000)
    values = regmap.reset_values(cfg)
    assert values["DRAM_BASE"] == 0x8000_0000 and values["DRAM_SIZE"] == 0x1000_0000
    assert values["STATUS"] == values["CTRL"] == values["IRQ_STATUS"] == 0
    with pytest.raises(ValueError, match="DRAM_SIZE"):
        regmap.reset_values(Config(dram_size=1 << 32))


def test_pack_and_unpack_round_trip():
    reg = regmap.by_name("CONFIG_WIDTHS")
    word = reg.pack(input=8, os=1)
    assert word == 8 | 1 << 31
    assert reg.unpack(word)["os"] == 1 and reg.unpack(word)["ws"] == 0
    with pytest.raises(ValueError, match="input"):
        reg.pack(input=64)


def test_markdown_table_lists_every_register_and_field():
    table = regmap.markdown_table()
    lines = table.splitlines()
    assert lines[0].startswith("| register | offset | access |")
    assert len(lines) == 2 + len(regmap.REGISTERS)
    for reg, line in zip(regmap.REGISTERS, lines[2:]):
        assert line.startswith(f"| {reg.name} | {reg.offset:#06x} | {reg.access} |")
        for f in reg.fields:
            assert f"`{f.name}`" in line


def test_legal_rules():
    wrap, clamp, top = regmap.Legal(0xFFFF, wrap=True), regmap.Legal(0xFFFF), regmap.Legal(1 << 16)
    assert (wrap.bits, clamp.bits, top.bits) == (16, 16, 17)
    assert wrap.above_from == clamp.above_from == top.above_from == 16
    assert wrap.value(0x1_2345) == 0x2345 and clamp.value(0x1_2345) == 0xFFFF
    assert top.value(0x1_2345) == 1 << 16 and top.value(1 << 16) == 1 << 16
    assert top.value(0xFFFF) == 0xFFFF and clamp.value(0xFFFF) == 0xFFFF
    for limit, wrap in ((0, False), (0x1234, False), (1 << 16, True), (1 << 32, False)):
        with pytest.raises(ValueError, match="Legal.limit"):
            regmap.Legal(limit, wrap=wrap)


def test_warl_registers_follow_the_address_space():
    small, full = Config(addr_width=17, dram_size=1 << 17), Config()
    values = {"PROG_BASE": 0xFFFF_FFF0, "PROG_COUNT": 0xFFFF_FFFF, "DRAM_BASE": 0x2_0001,
              "DRAM_SIZE": 0x2_0000, "WATCHDOG": 0xFFFF_FFFF}
    held_small = {"PROG_BASE": 0x1_FFF0, "PROG_COUNT": (1 << 14) - 1, "DRAM_BASE": 0x2_0000,
                  "DRAM_SIZE": 0x2_0000, "WATCHDOG": 0xFFFF_FFFF}
    # With addr_width=32 only PROG_COUNT changes what it holds: pc_width is 29 bits.
    held_full = dict(values, PROG_COUNT=(1 << 29) - 1)
    for name, word in values.items():
        reg = regmap.by_name(name)
        assert reg.legal_value(small, word) == held_small[name], name
        assert reg.legal_value(full, word) == held_full[name], name
    assert regmap.by_name("WATCHDOG").legal(small) is None


def test_only_a_one_field_rw_register_can_be_warl():
    field = regmap.Field("x", 0, 32)
    rule = lambda cfg: regmap.Legal(0xFF)  # noqa: E731
    with pytest.raises(ValueError, match="BAD.*WARL"):
        regmap.Register("BAD", 0x0, "ro", (field,), "", warl=rule)
    with pytest.raises(ValueError, match="BAD.*WARL"):
        regmap.Register("BAD", 0x0, "rw", (regmap.Field("x", 8, 8),), "", warl=rule)
    reg = regmap.Register("GOOD", 0x0, "rw", (field,), "", reset=0x100, warl=rule)
    with pytest.raises(ValueError, match="GOOD: reset value 0x100 is not a legal value"):
        reg.reset_value(Config())
