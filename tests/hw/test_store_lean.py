"""The store unit with the serial output lane and its qparam rows in a memory
(``Config.output_lane="serial"``): CONFIG / STORE sequences bit-exact with
:class:`sim.machine.Machine`, random stalls on every stream, and the qparam rows reading as 0
after a (soft) reset until written again, as the flip-flop rows do, and rows written while
STOREs read the other slot (a write waits for the lane's read address to hold still)."""

import pytest

from hw.config import Config
from sw import isa

from .test_units import _seed, run_store_unit

CONFIGS = {
    "4x4-32bit": Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1, dma_data_width=32,
                        output_lanes=1, output_lane="serial"),
    "4x8-32bit": Config(rows=4, cols=8, scratchpad_kib=4, accumulator_kib=2, dma_data_width=32,
                        output_lanes=1, output_lane="serial"),
    "4x4-128bit": Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1,
                         dma_data_width=128, output_lanes=1, output_lane="serial"),
    "4x2-64bit-acc20": Config(rows=4, cols=2, scratchpad_kib=4, accumulator_kib=1,
                              dma_data_width=64, acc_width=20, output_lanes=1,
                              output_lane="serial"),
    "4x4-32bit-queue": Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1,
                              dma_data_width=32, output_lanes=1, output_lane="serial",
                              addr_width=17, dram_size=1 << 16, unit_commands="queue"),
    # qparam rows arrive a column at a time (the load unit's load_writes="columns")
    "4x4-32bit-columns": Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1,
                                dma_data_width=32, output_lanes=1, output_lane="serial",
                                load_writes="columns"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_serial_store_unit_matches_the_golden_machine(name):
    run_store_unit(CONFIGS[name], _seed())


@pytest.mark.parametrize("rows", [(), (0, 1, 2), (3, 4, 5), (1, 5)])
def test_qparam_rows_read_as_zero_after_reset_until_written(rows):
    run_store_unit(CONFIGS["4x4-32bit"], _seed(), reset_rows=rows)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("busy_slot", range(isa.QPARAM_SLOTS))
def test_qparam_writes_while_stores_read_the_other_slot(name, busy_slot):
    run_store_unit(CONFIGS[name], _seed(), busy_slot=busy_slot)
