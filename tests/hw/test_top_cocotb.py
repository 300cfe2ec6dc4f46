"""End to end: the compiler's programs on the emitted ``tensor_core.v`` in Verilator.

Every run goes through the runtime's RTL backend (cocotbext-axi AxiRam as DRAM, an
AxiLiteMaster on the registers) and is compared bit for bit with the golden machine and
with plain numpy. Seeds are printed; ``SEED=...`` replays them.
"""

import os
import random

import numpy as np
import pytest

from hw.config import Config
from sim import golden
from sim.backends import RtlBackend
from sw import compiler, isa
from sw.runtime import AcceleratorError, Runtime

pytestmark = [pytest.mark.cocotb, pytest.mark.xdist_group("top")]

CONFIGS = {
    "4x4": Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1),
    "8x4-64bit": Config(rows=8, cols=4, scratchpad_kib=8, accumulator_kib=1, dma_data_width=64),
}


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"SEED={seed}")
    return seed


def _runtimes(cfg, backpressure, seed):
    rtl = Runtime(cfg, RtlBackend(cfg, backpressure=backpressure, seed=seed,
                                  timeout_cycles=5_000_000))
    return rtl, Runtime(cfg, "golden")


def _int8(rng, shape):
    values = rng.integers(-128, 128, shape, dtype=np.int8)
    values.flat[:2] = [-128, 127][:values.size]
    return values


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_gemms_match_golden_and_numpy(name):
    cfg = CONFIGS[name]
    seed = _seed()
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 1), (37, 53, 29)] + [tuple(int(x) for x in rng.integers(1, 24, 3))
                                          for _ in range(3)]
    for index, (M, K, N) in enumerate(shapes):
        A, B = _int8(rng, (M, K)), _int8(rng, (K, N))
        dataflow = ("ws", "os")[index % 2]
        rtl, gold = _runtimes(cfg, backpressure=index % 2 == 1, seed=seed + index)
        if index % 3 == 0:
            kw = dict(out_dtype="int32", bias=rng.integers(-(1 << 31), 1 << 31, N,
                                                           dtype=np.int64).astype(np.int32))
            expected = golden.wrap(A.astype(np.int64) @ B + kw["bias"], 32)
        else:
            kw = dict(out_dtype="int8", multiplier=rng.integers(1 << 29, 1 << 31, N),
                      shift=rng.integers(0, 12, N), zero_point=int(rng.integers(-20, 20)),
                      bias=rng.integers(-5000, 5000, N, dtype=np.int32), clamp=(-100, 120))
            expected = golden.requantize(A.astype(np.int64) @ B + kw["bias"], kw["multiplier"],
                                         kw["shift"], kw["zero_point"], -100, 120)
        C, report = rtl.gemm(A, B, dataflow=dataflow, **kw)
        C_gold, _ = gold.gemm(A, B, dataflow=dataflow, **kw)
        assert np.array_equal(C, C_gold), (M, K, N, dataflow)
        assert np.array_equal(C, expected), (M, K, N, dataflow)
        assert report["cycles"] > report["ideal_cycles"] > 0
        assert report["macs"] == M * K * N


def test_gemm_larger_than_the_scratchpad_runs_in_passes():
    cfg = CONFIGS["4x4"]
    seed = _seed()
    rng = np.random.default_rng(seed)
    M, K, N = 70, 90, 23            # A alone is 6.3 KB; the scratchpad holds 4 KiB
    A, B = _int8(rng, (M, K)), _int8(rng, (K, N))
    rtl, _ = _runtimes(cfg, backpressure=True, seed=seed)
    C, report = rtl.gemm(A, B, out_dtype="int32")
    assert np.array_equal(C, A.astype(np.int64) @ B)
    assert report["dma_bytes_read"] > cfg.scratchpad_kib * 1024


def _conv_reference(X, W, stride, pad):
    N, H, Wd, Ci = X.shape
    kh, kw, _, Co = W.shape
    Xp = np.pad(X.astype(np.int64), ((0, 0), (pad[0], pad[1]), (pad[2], pad[3]), (0, 0)))
    Ho = (H + pad[0] + pad[1] - kh) // stride + 1
    Wo = (Wd + pad[2] + pad[3] - kw) // stride + 1
    Y = np.zeros((N, Ho, Wo, Co), dtype=np.int64)
    for i in range(Ho):
        for j in range(Wo):
            patch = Xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            Y[:, i, j, :] = np.tensordot(patch, W.astype(np.int64), axes=([1, 2, 3], [0, 1, 2]))
    return Y


def test_conv2d_matches_numpy():
    cfg = CONFIGS["8x4-64bit"]
    seed = _seed()
    rng = np.random.default_rng(seed)
    X, W = _int8(rng, (1, 9, 7, 3)), _int8(rng, (3, 3, 3, 5))
    rtl, _ = _runtimes(cfg, backpressure=False, seed=seed)
    Y, _ = rtl.conv2d(X, W, stride=2, padding="same", out_dtype="int32")
    # TensorFlow's "same" for 9x7, 3x3, stride 2: pad 1 on each side.
    assert np.array_equal(Y, _conv_reference(X, W, 2, (1, 1, 1, 1)))


def _run_words(cfg, words, data=b"", window=None):
    """Run hand-assembled ``words`` (program at 0, data after it) on RTL and on golden."""
    image = isa.to_bytes(words) + data
    image += bytes(-len(image) % 64)
    results = {}
    for name, backend in (("rtl", RtlBackend(cfg, timeout_cycles=200_000)),
                          ("golden", Runtime(cfg, "golden").backend)):
        results[name] = backend.run(image, 0, 0, len(words), window=window or (0, len(image)))
    return results


def test_illegal_instruction_reports_cause_and_index():
    cfg = CONFIGS["4x4"]
    words = [isa.encode("CONFIG", multiplier=1 << 30, clamp_lo=-128, clamp_hi=127),
             isa.encode("LOAD", rows=1, row_elems=4, dram_addr=0, dram_stride=4),
             isa.encode("PRELOAD", sp_addr=0, k_rows=cfg.rows + 1),   # k_rows > rows
             isa.encode("HALT")]
    results = _run_words(cfg, words)
    for result in results.values():
        assert result.error is not None
        cause, pc, _ = result.error
        assert (isa.ErrorCause(cause), pc) == (isa.ErrorCause.ILLEGAL_INSTRUCTION, 2)


def test_dma_outside_the_window_reports_cause_index_and_address():
    cfg = CONFIGS["4x4"]
    words = [isa.encode("LOAD", rows=4, row_elems=4, dram_addr=64, dram_stride=64),
             isa.encode("LOAD", dst=1, rows=1, row_elems=4, dram_addr=0x80, dram_stride=0,
                        local_addr=0),
             isa.encode("STORE", acc_addr=0, out_int32=1, rows=3, row_elems=4,
                        dram_addr=0xF0, dram_stride=0x40),
             isa.encode("HALT")]
    results = _run_words(cfg, words, data=bytes(range(256)) * 2, window=(0, 0x140))
    for result in results.values():
        cause, pc, addr = result.error
        # rows at 0xF0, 0x130 (ends exactly at the window's end) and 0x170 (outside)
        assert (isa.ErrorCause(cause), pc, addr) == (isa.ErrorCause.DMA_WINDOW, 2, 0x170)
    # The row before the fault was written, identically; nothing past the window was.
    assert results["rtl"].dram == results["golden"].dram


def test_runtime_raises_a_clear_error():
    cfg = CONFIGS["4x4"]
    rtl = Runtime(cfg, RtlBackend(cfg, timeout_cycles=200_000))
    A, B = np.ones((4, 4), np.int8), np.ones((4, 4), np.int8)
    program = compiler.compile_gemm(cfg, A.shape, B.shape, out_dtype="int32")
    with pytest.raises(AcceleratorError, match="DMA_WINDOW at instruction"):
        rtl.run(program, dict(A=A, B=B), window=(program.dram_base, 64))
