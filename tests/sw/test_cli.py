"""``python -m sw``: round trips on the golden backend; bad input gives one error line."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim import golden

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "sw", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def files(tmp_path):
    g = np.random.default_rng(7)
    arrays = dict(
        A=g.integers(-128, 128, (9, 21)).astype(np.int8),
        B=g.integers(-128, 128, (21, 6)).astype(np.int8),
        bias=g.integers(-5000, 5000, 6).astype(np.int32),
        M=g.integers(1 << 30, 1 << 31, 6).astype(np.int32),
        S=g.integers(6, 12, 6).astype(np.int32),
        X=g.integers(-128, 128, (1, 6, 5, 2)).astype(np.int8),
        W=g.integers(-128, 128, (3, 3, 2, 4)).astype(np.int8),
        F=np.zeros((9, 21)),
        big=np.full((9, 21), 200, np.int16),
    )
    for name, value in arrays.items():
        np.save(tmp_path / f"{name}.npy", value)
    return tmp_path, arrays


def test_gemm_int32_with_bias_and_report(files):
    path, a = files
    r = run_cli("gemm", "A.npy", "B.npy", "-o", "C.npy", "--bias", "bias.npy",
                "--out-dtype", "int32", "--report", "r.json", cwd=path)
    assert r.returncode == 0, r.stderr
    C = np.load(path / "C.npy")
    assert C.dtype == np.int32
    np.testing.assert_array_equal(C, golden.matmul(a["A"], a["B"]) + a["bias"])
    report = json.loads((path / "r.json").read_text())
    assert report["macs"] == 9 * 21 * 6 and report["backend"] == "golden"
    assert report["cycles"] is None


def test_gemm_int8_per_column_relu(files):
    path, a = files
    r = run_cli("gemm", "A.npy", "B.npy", "-o", "C.npy", "--multiplier-file", "M.npy",
                "--shift-file", "S.npy", "--zero-point", "3", "--activation", "relu",
                "--dataflow", "os", cwd=path)
    assert r.returncode == 0, r.stderr
    want = golden.output_pipeline(golden.matmul(a["A"], a["B"]), multiplier=a["M"],
                                  shift=a["S"], zero_point=3, lo=3, hi=127)
    np.testing.assert_array_equal(np.load(path / "C.npy"), want)


def test_conv2d_same_stride_2(files):
    path, a = files
    r = run_cli("conv2d", "X.npy", "W.npy", "-o", "Y.npy", "--stride", "2", "--padding", "same",
                "--multiplier", 1 << 30, "--shift", 8, "--clamp", -50, 60, cwd=path)
    assert r.returncode == 0, r.stderr
    from tests.sw.test_compiler import reference_conv
    acc = reference_conv(a["X"], a["W"], 2, "same")
    want = golden.requantize(acc, 1 << 30, 8, 0, -50, 60)
    np.testing.assert_array_equal(np.load(path / "Y.npy"), want)


@pytest.mark.parametrize("args, message", [
    (("gemm", "A.npy", "B.npy", "-o", "C.npy"), "needs --multiplier"),
    (("gemm", "F.npy", "B.npy", "-o", "C.npy", "--out-dtype", "int32"), "integers"),
    (("gemm", "big.npy", "B.npy", "-o", "C.npy", "--out-dtype", "int32"), "range"),
    (("gemm", "A.npy", "A.npy", "-o", "C.npy", "--out-dtype", "int32"), "inner dimensions"),
    (("gemm", "missing.npy", "B.npy", "-o", "C.npy"), "does not exist"),
    (("gemm", "A.npy", "B.npy"), "required"),
    (("gemm", "A.npy", "B.npy", "-o", "C.npy", "--multiplier", "5"), "go together"),
    (("gemm", "A.npy", "B.npy", "-o", "C.npy", "--multiplier", "5", "--shift", "40"), "0 to 31"),
    (("gemm", "A.npy", "B.npy", "-o", "C.npy", "--multiplier-file", "S.npy", "--shift-file",
      "bias.npy", "--bias", "M.npy"), ""),
    (("gemm", "A.npy", "B.npy", "-o", "C.npy", "--out-dtype", "int32", "--bias", "S.npy",
      "--backend", "nosuch"), "unknown backend"),
    (("gemm", "A.npy", "B.npy", "-o", "C.npy", "--out-dtype", "int32", "--config",
      "nope.json"), "does not exist"),
    (("conv2d", "X.npy", "W.npy", "-o", "Y.npy", "--padding", "wide", "--out-dtype", "int32"),
     "padding"),
    (("conv2d", "A.npy", "W.npy", "-o", "Y.npy", "--out-dtype", "int32"), "dimensions"),
    (("frobnicate",), "invalid choice"),
])
def test_bad_input_one_error_line(files, args, message):
    path, _ = files
    r = run_cli(*args, cwd=path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert message in lines[0]
    assert "Traceback" not in r.stderr
