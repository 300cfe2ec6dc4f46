"""The analytic models, workload shapes and table formatting of the benchmark (no simulation)."""

import json

import pytest

from bench import generator, models, report, workloads
from hw.config import Config
from sw import compiler


# -- SCALE-Sim --------------------------------------------------------------------------------

@pytest.mark.parametrize("dataflow, M, K, N, rows, cols, expected", [
    # One fold: fill 2R + C - 2 plus one cycle per streamed row.
    ("ws", 16, 16, 16, 16, 16, 62),
    ("ws", 512, 512, 512, 16, 16, 32 * 32 * (32 + 16 + 512 - 2)),
    # Partial folds round up: K=17 needs two row folds, N=17 two column folds.
    ("ws", 1, 17, 17, 16, 16, 2 * 2 * (32 + 16 + 1 - 2)),
    ("ws", 100, 8, 8, 4, 2, 2 * 4 * (8 + 2 + 100 - 2)),
    ("os", 16, 16, 16, 16, 16, 46),
    ("os", 33, 5, 7, 16, 4, 3 * 2 * (16 + 4 + 5 - 2)),
])
def test_scalesim_cycles(dataflow, M, K, N, rows, cols, expected):
    assert models.scalesim_cycles(dataflow, M, K, N, rows, cols) == expected


def test_scalesim_utilization_approaches_one_for_long_streams():
    rows = cols = 16
    M = 1 << 20
    cycles = models.scalesim_cycles("ws", M, rows, cols, rows, cols)
    util = models.utilization(M * rows * cols, rows, cols, cycles)
    assert 0.9999 < util < 1


def test_scalesim_layers_is_the_sum():
    gemms = [(360, 64, 32), (360, 32, 10)]
    assert models.scalesim_cycles_layers("ws", gemms, 16, 16) == (
        models.scalesim_cycles("ws", 360, 64, 32, 16, 16)
        + models.scalesim_cycles("ws", 360, 32, 10, 16, 16))


@pytest.mark.parametrize("kwargs, message", [
    (dict(dataflow="rs", M=1, K=1, N=1, rows=1, cols=1), "dataflow"),
    (dict(dataflow="ws", M=0, K=1, N=1, rows=1, cols=1), "M must"),
    (dict(dataflow="os", M=1, K=1, N=1, rows=1, cols=2.0), "cols must"),
])
def test_scalesim_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.scalesim_cycles(**kwargs)


# -- roofline and DMA bound -------------------------------------------------------------------

def test_roofline():
    peak, bus = 256, 16
    ridge = peak / bus
    assert models.roofline_macs_per_cycle(ridge / 2, peak, bus) == peak / 2
    assert models.roofline_macs_per_cycle(ridge * 4, peak, bus) == peak
    assert models.arithmetic_intensity(1000, 250) == 4
    assert models.arithmetic_intensity(1000, 0) is None
    # Memory bound: 1 MiB over a 16-byte bus is 65536 cycles whatever the MAC count.
    assert models.roofline_cycles(1 << 20, 1 << 20, peak, bus) == 65536
    assert models.roofline_cycles(1 << 30, 1 << 10, peak, bus) == (1 << 30) / peak


def test_dma_fraction():
    assert models.dma_bound_cycles(1600, 16) == 100
    assert models.dma_fraction(1600, 16, 125) == 0.8
    assert models.dma_fraction(1600, 16, None) is None


# -- workloads ----------------------------------------------------------------------------------

def test_workload_shapes_match_the_compiler():
    """The models see the same GEMMs (and MAC counts) as the compiled programs."""
    cfg = Config()
    for w in workloads.all_workloads():
        p = w.params
        if w.kind == "gemm":
            program = compiler.compile_gemm(cfg, (p["M"], p["K"]), (p["K"], p["N"]))
        elif w.kind == "conv2d":
            program = compiler.compile_conv2d(cfg, p["x_shape"], p["w_shape"],
                                              stride=p["stride"], padding=p["padding"])
        else:
            quants = [compiler.GemmQuant("int8")] * (len(p["sizes"]) - 1)
            program = compiler.compile_mlp(cfg, p["batch"], list(p["sizes"]), quants)
        assert program.macs == w.macs, w.name


def test_required_workloads_and_targets():
    by_name = {w.name: w for w in workloads.all_workloads()}
    assert by_name["gemm_512"].target == ("utilization", 0.95)
    assert by_name["gemm_128"].target == ("utilization", 0.85)
    assert by_name["resnet18_layer1"].gemms == ((56 * 56, 9 * 64, 64),)
    assert by_name["resnet18_layer1"].target == ("utilization", 0.85)
    assert by_name["dense_1024"].gemms == ((1, 1024, 1024),)
    assert by_name["dense_1024"].target == ("dma_fraction", 0.80)
    assert [w.name for w in workloads.select({"gemm"})][0] == "gemm_16"


def test_quick_selection_is_small():
    quick = workloads.select(quick=True)
    assert {w.group for w in quick} == set(workloads.GROUPS)
    assert all(w.macs <= workloads.QUICK_MAX_MACS for w in quick)
    assert "gemm_512" not in {w.name for w in quick}


def test_inputs_are_deterministic_and_int8():
    w = workloads.select(names={"cifar_resnet_conv3"})[0]
    a, b = w.make_inputs(), w.make_inputs()
    assert (a["X"] == b["X"]).all() and a["X"].dtype.name == "int8"
    assert a["X"].min() < -100 and a["X"].max() > 100


# -- report rows and tables ---------------------------------------------------------------------

def _workload(name):
    return workloads.select(names={name})[0]


def test_run_row_measured():
    cfg = Config()
    w = _workload("gemm_128")
    rpt = dict(cycles=9000, dma_bytes_read=150_000, dma_bytes_written=16_384, instructions=10)
    row = report.run_row(w, cfg, "ws", "verilator", "ok", rpt)
    assert row["utilization"] == pytest.approx(8192 / 9000)
    assert row["scalesim_cycles"] == 64 * (32 + 16 + 128 - 2)
    assert row["arithmetic_intensity"] == pytest.approx(w.macs / 166_384)
    assert row["dma_fraction"] == pytest.approx(166_384 / 16 / 9000)
    assert row["meets_target"] is True
    row = report.run_row(w, cfg, "ws", "verilator", "ok", dict(rpt, cycles=9700))
    assert row["meets_target"] is False
    json.dumps(row)


def test_run_row_not_available_has_no_numbers():
    cfg = Config()
    golden = dict(cycles=None, dma_bytes_read=100, dma_bytes_written=28)
    row = report.run_row(_workload("dense_1024"), cfg, "ws", "verilator", "not available",
                         reason="no simulator", reference=golden)
    assert row["cycles"] is row["utilization"] is row["dma_fraction"] is None
    assert row["meets_target"] is None
    assert row["dma_bytes"] == 128      # the model still gets the golden byte counts
    table = report.runs_table([row])
    assert "not available: no simulator" in table
    assert "| dense_1024 | 1x1024x1024 | 1.05M | ws | verilator | - | - |" in table
    with pytest.raises(ValueError, match="status"):
        report.run_row(_workload("gemm_16"), cfg, "ws", "golden", "fine")


def test_markdown_table_shape():
    text = report.markdown(("a", "b"), [["1", "x|y"], ["2", "3"]])
    lines = text.splitlines()
    assert lines[0] == "| a | b |" and lines[1] == "|---|---|"
    assert lines[2] == "| 1 | x/y |" and len(lines) == 4


def test_target_text():
    cfg = Config()
    w = _workload("gemm_512")
    row = report.run_row(w, cfg, "ws", "verilator", "ok", dict(cycles=10 ** 9))
    assert "util >= 95% MISSED" in report.runs_table([row])


# -- generator scaling --------------------------------------------------------------------------

@pytest.mark.parametrize("n", generator.DEFAULT_SIZES)
def test_scaled_config_is_valid_and_minimal(n):
    cfg = generator.scaled_config(n)
    assert (cfg.rows, cfg.cols) == (n, n)
    assert cfg.acc_rows >= 2 * n and cfg.sp_bank_rows >= n
    assert cfg.accumulator_kib >= Config().accumulator_kib


def test_generator_command_names_only_changed_knobs():
    cmd = generator.generator_command(generator.scaled_config(128), "out")
    assert cmd[1:] == ["-m", "hw", "verilog", "--out", "out", "--rows", "128", "--cols", "128",
                       "--accumulator-kib", "128"]


def test_roofline_notes_flag_unreachable_targets():
    cfg = Config()
    w = _workload("gemm_128")
    # 2 MiB of traffic over a 16-byte bus is 131072 cycles, far above the 8192 ideal ones.
    heavy = report.run_row(w, cfg, "ws", "golden", "ok",
                           dict(dma_bytes_read=2 << 20, dma_bytes_written=0))
    light = report.run_row(w, cfg, "ws", "golden", "ok",
                           dict(dma_bytes_read=3 * 128 * 128, dma_bytes_written=0))
    notes = report.roofline_notes([heavy, heavy])
    assert len(notes) == 1 and "85%" in notes[0] and "6.2%" in notes[0]
    assert report.roofline_notes([light]) == []
