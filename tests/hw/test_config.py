import json

import pytest

from hw.config import Config, ConfigError


def test_default_is_the_documented_design():
    cfg = Config()
    assert (cfg.rows, cfg.cols, cfg.input_width, cfg.acc_width) == (16, 16, 8, 32)
    assert cfg.sp_rows * cfg.sp_row_bytes == 256 * 1024
    assert cfg.acc_rows * cfg.acc_row_bytes == 64 * 1024
    assert cfg.output_lanes == cfg.cols
    assert cfg.has_ws and cfg.has_os


@pytest.mark.parametrize("name, value", [
    ("rows", 0), ("cols", 513), ("rows", 2.5), ("input_width", 9), ("weight_width", 1),
    ("acc_width", 15), ("acc_width", 33), ("output_width", 9), ("dataflow", "wos"),
    ("scratchpad_banks", 3), ("scratchpad_kib", 3), ("accumulator_kib", 3),
    ("output_lanes", 5), ("dma_data_width", 256), ("max_burst_beats", 100),
    ("max_outstanding", 0), ("dram_size", 0), ("id_width", 0), ("addr_width", 40),
    ("dma_cmd_fields", "narrow"),
])
def test_invalid_values_name_the_parameter(name, value):
    with pytest.raises(ConfigError, match=f"Config.{name}="):
        Config(**{name: value})


def test_json_round_trip_keeps_every_knob():
    cfg = Config(rows=8, cols=4, dataflow="ws", scratchpad_kib=16, accumulator_kib=4,
                 dma_data_width=64, output_lanes=2)
    again = Config.from_json(cfg.to_json())
    assert again == cfg
    assert json.loads(cfg.to_json())["derived"]["sp_row_elems"] == 8


def test_unknown_parameter_in_json_is_rejected():
    with pytest.raises(ConfigError, match="bogus"):
        Config.from_dict({"rows": 4, "bogus": 1})


def test_replace_keeps_default_output_lanes_following_cols():
    assert Config().replace(cols=8).output_lanes == 8
    assert Config(output_lanes=4).replace(cols=8).output_lanes == 4


def test_rectangular_scratchpad_rows_fit_both_operands():
    cfg = Config(rows=8, cols=4, scratchpad_kib=16, accumulator_kib=4)
    assert cfg.sp_row_elems == 8
    assert cfg.acc_row_bytes == 16
