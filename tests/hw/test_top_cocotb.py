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
from sw.isa import LoadDst
from sw.runtime import AcceleratorError, Runtime
from tests.sw.test_compiler import reference_conv

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


def _quantised_case(rng, exact, *, int32):
    """Random output options for the exact (int64) result ``exact``, whose last axis is the
    output channel: int32 + bias, or int8 with per-column requantisation, bias, a zero
    point and a clamp; returns them and the numpy result."""
    N = exact.shape[-1]
    if int32:
        kw = dict(out_dtype="int32", bias=rng.integers(-(1 << 31), 1 << 31, N,
                                                       dtype=np.int64).astype(np.int32))
        return kw, golden.wrap(exact + kw["bias"], 32)
    kw = dict(out_dtype="int8", multiplier=rng.integers(1 << 29, 1 << 31, N),
              shift=rng.integers(0, 12, N), zero_point=int(rng.integers(-20, 20)),
              bias=rng.integers(-5000, 5000, N, dtype=np.int32), clamp=(-100, 120))
    return kw, golden.requantize(exact + kw["bias"], kw["multiplier"], kw["shift"],
                                 kw["zero_point"], -100, 120)


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
        kw, expected = _quantised_case(rng, A.astype(np.int64) @ B, int32=index % 3 == 0)
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


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_conv2d_layers_match_golden_and_numpy(name):
    """Random NHWC layers (batch, size, channels, kernel, stride, same / valid / explicit
    padding) with random AXI backpressure; int32 + bias and requantised int8 in turn."""
    cfg = CONFIGS[name]
    seed = _seed()
    rng = np.random.default_rng(seed)
    for index in range(2):
        kh, kw = (int(k) for k in rng.integers(1, 4, 2))
        n, h, w, ci, co = (int(rng.integers(1, 3)), int(rng.integers(kh, 9)),
                           int(rng.integers(kw, 9)), int(rng.integers(1, 7)),
                           int(rng.integers(1, 10)))
        stride = int(rng.integers(1, 3))
        padding = ("same", "valid", int(rng.integers(0, 3)))[int(rng.integers(3))]
        X, W = _int8(rng, (n, h, w, ci)), _int8(rng, (kh, kw, ci, co))
        options, expected = _quantised_case(rng, reference_conv(X, W, stride, padding),
                                          int32=index == 0)
        rtl, gold = _runtimes(cfg, backpressure=True, seed=seed + index)
        layer = (X.shape, W.shape, stride, padding)
        Y, report = rtl.conv2d(X, W, stride=stride, padding=padding, **options)
        Y_gold, _ = gold.conv2d(X, W, stride=stride, padding=padding, **options)
        assert np.array_equal(Y, Y_gold), layer
        assert np.array_equal(Y, expected), layer
        assert report["macs"] == expected.size * kh * kw * ci


def _run_words(cfg, words, data=b"", window=None, backpressure=False, seed=None):
    """Run hand-assembled ``words`` (program at 0, data after it) on RTL and on golden."""
    image = isa.to_bytes(words) + data
    image += bytes(-len(image) % 64)
    results = {}
    rtl = RtlBackend(cfg, timeout_cycles=200_000, backpressure=backpressure, seed=seed)
    for name, backend in (("rtl", rtl),
                          ("golden", Runtime(cfg, "golden").backend)):
        results[name] = backend.run(image, 0, 0, len(words), window=window or (0, len(image)))
    return results


def test_hand_assembled_ws_and_os_program():
    """Every instruction form by hand: accumulator and qparam LOADs, two K tiles of WS
    (PRELOAD of tile 1 behind MATMUL 0, accumulating onto loaded rows), OS with a
    zero-filled partial M tile, per-column requantised int8 and int32 + bias STOREs; the
    tokens chain load -> exec -> store. Random AXI backpressure."""
    cfg = CONFIGS["4x4"]
    R, C = cfg.rows, cfg.cols
    seed = _seed()
    rng = np.random.default_rng(seed)
    M, K = 6, 2 * R
    A, B = _int8(rng, (M, K)), _int8(rng, (K, C))
    acc_init = rng.integers(-(1 << 20), 1 << 20, (M, C)).astype("<i4")
    bias = [rng.integers(-(1 << 16), 1 << 16, C), rng.integers(-(1 << 31), 1 << 31, C)]
    mult = rng.integers(1 << 30, 1 << 31, C)
    shift = rng.integers(14, 20, C)
    qparams = np.stack([bias[0], mult, shift, bias[1], mult, shift]).astype("<i4")

    # Data layout after the program (which takes at most 40 instructions).
    base = 40 * isa.INSTR_BYTES
    sections = {"A": A.tobytes(), "AT": np.ascontiguousarray(A.T).tobytes(), "B": B.tobytes(),
                "ACC": acc_init.tobytes(), "QP": qparams.tobytes()}
    addr, data = {}, b""
    for key, blob in sections.items():
        addr[key] = base + len(data)
        data += blob + bytes(-len(blob) % 16)
    out = {"WS": base + len(data), "OS": base + len(data) + 64}
    data += bytes(256)
    sp_b = [16, 20]                 # WS weight tiles (rows of B)
    sp_at, sp_bt = 32, 48           # OS operands

    def load(**f):
        return isa.encode("LOAD", **f)
    words = [
        load(dst=LoadDst.ACC, local_addr=0, rows=M, row_elems=C, dram_addr=addr["ACC"],
             dram_stride=4 * C),
        load(local_addr=0, rows=M, row_elems=R, dram_addr=addr["A"], dram_stride=K),
        load(local_addr=sp_b[0], rows=R, row_elems=C, dram_addr=addr["B"], dram_stride=C,
             push_next=1),
        load(dst=LoadDst.QPARAM, local_addr=0, rows=6, row_elems=C, dram_addr=addr["QP"],
             dram_stride=4 * C),
        load(local_addr=8, rows=M, row_elems=R, dram_addr=addr["A"] + R, dram_stride=K),
        load(local_addr=sp_b[1], rows=R - 1, row_elems=C, dram_addr=addr["B"] + R * C,
             dram_stride=C, push_next=1),
        # OS: A transposed, M tile 0 (4 rows) and tile 1 (2 rows, zero-filled), and B.
        load(local_addr=sp_at, rows=K, row_elems=R, dram_addr=addr["AT"], dram_stride=M),
        load(local_addr=sp_at + K, rows=K, row_elems=M - R, dram_addr=addr["AT"] + R,
             dram_stride=M),
        load(local_addr=sp_bt, rows=K, row_elems=C, dram_addr=addr["B"], dram_stride=C,
             push_next=1),
        isa.encode("PRELOAD", sp_addr=sp_b[0], k_rows=R, pop_prev=1),
        isa.encode("MATMUL", a_addr=0, acc_addr=0, count=M, accumulate=1),
        # The last weight row of tile 1 is left out: k_rows = R - 1 zero-fills it.
        isa.encode("PRELOAD", sp_addr=sp_b[1], k_rows=R - 1, pop_prev=1),
        isa.encode("MATMUL", a_addr=8, acc_addr=0, count=M, accumulate=1, push_next=1),
        isa.encode("MATMUL", dataflow=1, a_addr=sp_at, b_addr=sp_bt, acc_addr=8, count=K,
                   pop_prev=1),
        isa.encode("MATMUL", dataflow=1, a_addr=sp_at + K, b_addr=sp_bt, acc_addr=12,
                   count=K, push_next=1),
        isa.encode("CONFIG", per_column=1, bias_en=1, zero_point=-3, clamp_lo=-100,
                   clamp_hi=110),
        isa.encode("STORE", acc_addr=0, rows=M, row_elems=C, dram_addr=out["WS"],
                   dram_stride=C, pop_prev=1),
        isa.encode("STORE", acc_addr=8, out_int32=1, qslot=1, rows=M, row_elems=C - 1,
                   dram_addr=out["OS"], dram_stride=4 * C, pop_prev=1),
        isa.encode("HALT"),
    ]
    # _run_words puts the data right after the program: pad it out to ``base``.
    data = bytes(base - len(words) * isa.INSTR_BYTES) + data
    results = _run_words(cfg, words, data, backpressure=True, seed=seed)
    for result in results.values():
        assert result.error is None
    assert results["rtl"].dram == results["golden"].dram

    W1 = B[R:].astype(np.int64)
    W1[R - 1] = 0
    ws = acc_init + A[:, :R].astype(np.int64) @ B[:R] + A[:, R:].astype(np.int64) @ W1
    ws_expected = golden.output_pipeline(ws, bias=bias[0], multiplier=mult, shift=shift,
                                         zero_point=-3, lo=-100, hi=110)
    os_expected = golden.output_pipeline(A.astype(np.int64) @ B, bias=bias[1], out_int32=True)
    dram = results["rtl"].dram
    ws_got = np.frombuffer(dram, np.int8, M * C, out["WS"]).reshape(M, C)
    os_got = np.frombuffer(dram, "<i4", M * C, out["OS"]).reshape(M, C)
    assert np.array_equal(ws_got, ws_expected)
    assert np.array_equal(os_got[:, :C - 1], os_expected[:, :C - 1])
    assert not os_got[:, C - 1].any()


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


# Cycle counts are deterministic without backpressure: a change that slows the pipeline
# (or the compiler's schedule) fails here. Update the numbers only for a change that is
# meant to alter them, and say why in its commit.
EXPECTED_CYCLES = {"ws": 615, "os": 646}


@pytest.mark.parametrize("dataflow", sorted(EXPECTED_CYCLES))
def test_cycle_count_regression(dataflow):
    cfg = CONFIGS["4x4"]
    A = (np.arange(256, dtype=np.int64).reshape(16, 16) % 255 - 127).astype(np.int8)
    B = ((np.arange(256, dtype=np.int64).reshape(16, 16) * 7) % 255 - 127).astype(np.int8)
    C, report = Runtime(cfg, RtlBackend(cfg)).gemm(A, B, out_dtype="int32", dataflow=dataflow)
    assert np.array_equal(C, A.astype(np.int64) @ B)
    assert report["cycles"] == EXPECTED_CYCLES[dataflow]
