"""sw/compiler.py: compiled programs on the golden machine equal numpy, for any shape."""

import os
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hw.config import Config
from sim import golden
from sim.machine import Machine
from sw import compiler, isa
from sw.runtime import GoldenBackend, Runtime

SEED = int(os.environ.get("SEED", random.randrange(1 << 30)))
print(f"SEED={SEED}")

SMALL = {
    "4x4": Config(rows=4, cols=4, scratchpad_kib=1, accumulator_kib=1),
    "8x4": Config(rows=8, cols=4, scratchpad_kib=1, accumulator_kib=1, scratchpad_banks=1),
    "4x8": Config(rows=4, cols=8, scratchpad_kib=1, accumulator_kib=1, scratchpad_banks=2),
    "default": Config(),
}
FLOWS = ("ws", "os")


def reference_gemm(A, B, bias=None, multiplier=None, shift=None, zero_point=0, clamp=(-128, 127),
                   out_dtype="int8"):
    acc = golden.matmul(A, B)
    if out_dtype == "int32":
        return golden.output_pipeline(acc, bias=bias, out_int32=True)
    return golden.output_pipeline(acc, bias=bias, multiplier=multiplier, shift=shift,
                                  zero_point=zero_point, lo=clamp[0], hi=clamp[1])


def run_gemm(cfg, A, B, dataflow, queue_depth=None, **quant):
    """Compile and run on the golden backend (optionally with finite queues)."""
    return Runtime(cfg, GoldenBackend(cfg, queue_depth)).gemm(A, B, dataflow=dataflow, **quant)


def random_quant(g, n, per_column, with_bias, out_dtype):
    q = dict(out_dtype=out_dtype)
    if with_bias:
        q["bias"] = g.integers(-(1 << 31), 1 << 31, n).astype(np.int32) if g.random() < 0.2 \
            else g.integers(-5000, 5000, n).astype(np.int32)
    if out_dtype == "int8":
        if per_column:
            q["multiplier"] = g.integers(0, 1 << 31, n)
            q["shift"] = g.integers(0, 32, n)
        else:
            q["multiplier"] = int(g.integers(-(1 << 31), 1 << 31))
            q["shift"] = int(g.integers(0, 32))
        q["zero_point"] = int(g.integers(-20, 20))
        lo = int(g.integers(-128, 127))
        q["clamp"] = (lo, int(g.integers(lo, 128)))
    return q


def check(cfg, M, K, N, flow, seed, per_column, with_bias, out_dtype, queue_depth=None):
    g = np.random.default_rng(seed)
    A = g.integers(-128, 128, (M, K)).astype(np.int8)
    B = g.integers(-128, 128, (K, N)).astype(np.int8)
    if g.random() < 0.2:
        A[0, 0] = B[0, 0] = -128
    quant = random_quant(g, N, per_column, with_bias, out_dtype)
    C, report = run_gemm(cfg, A, B, flow, queue_depth, **quant)
    ref_quant = dict(quant)
    ref_quant.setdefault("clamp", (-128, 127))
    np.testing.assert_array_equal(C, reference_gemm(A, B, **ref_quant))
    assert C.dtype == (np.int32 if out_dtype == "int32" else np.int8)
    assert report["macs"] == M * K * N and report["cycles"] is None


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("name", SMALL)
@pytest.mark.parametrize("shape", [(1, 1, 1), (37, 53, 29)])
def test_fixed_shapes(name, flow, shape):
    check(SMALL[name], *shape, flow, SEED, per_column=True, with_bias=True, out_dtype="int8")


@pytest.mark.parametrize("flow", FLOWS)
def test_multi_pass_beyond_scratchpad_and_accumulator(flow):
    # 4x4 config: 256 SP rows, 64 ACC rows; K=300 is too long to keep operands resident,
    # M=150 several accumulator passes, N=13 four n-tiles (qparam slots reused).
    cfg = SMALL["4x4"]
    check(cfg, 150, 300, 13, flow, SEED, per_column=True, with_bias=True, out_dtype="int8",
          queue_depth=2)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(["4x4", "8x4", "4x8"]), flow=st.sampled_from(FLOWS),
       M=st.integers(1, 70), K=st.integers(1, 90), N=st.integers(1, 20),
       per_column=st.booleans(), with_bias=st.booleans(),
       out_dtype=st.sampled_from(["int8", "int32"]), seed=st.integers(0, 1 << 30))
def test_gemm_property_small_configs(name, flow, M, K, N, per_column, with_bias, out_dtype, seed):
    check(SMALL[name], M, K, N, flow, seed ^ SEED, per_column, with_bias, out_dtype)


@settings(max_examples=10, deadline=None)
@given(flow=st.sampled_from(FLOWS), M=st.integers(1, 80), K=st.integers(1, 80),
       N=st.integers(1, 40), seed=st.integers(0, 1 << 30))
def test_gemm_property_default_config(flow, M, K, N, seed):
    check(SMALL["default"], M, K, N, flow, seed ^ SEED, True, True, "int8", queue_depth=1)


def test_narrow_acc_width_wraps_like_golden():
    cfg = SMALL["4x4"].replace(acc_width=16)
    g = np.random.default_rng(SEED)
    A = np.full((5, 9), -128, np.int8)
    B = g.integers(-128, 128, (9, 6)).astype(np.int8)
    C, _ = Runtime(cfg).gemm(A, B, out_dtype="int32")
    np.testing.assert_array_equal(C, golden.matmul(A, B, acc_width=16))


def test_tokens_balance_and_double_buffer_banks():
    cfg = SMALL["4x4"]
    prog = compiler.compile_gemm(cfg, (70, 30), (30, 10), multiplier=1 << 30, shift=2)
    m = Machine(cfg, prog.pack(dict(A=np.ones((70, 30), np.int8), B=np.ones((30, 10), np.int8))),
                prog.dram_base)
    assert m.run(prog.prog_base, prog.prog_count).error is None
    assert all(v == 0 for v in m.tokens.values())
    loads = [isa.decode(w)[1] for w in prog.words if isa.decode(w)[0].name == "LOAD"]
    banks = {ld["local_addr"] // cfg.sp_bank_rows for ld in loads}
    assert len(banks) >= 2


def run_machine(cfg, prog, inputs):
    m = Machine(cfg, prog.pack(inputs), prog.dram_base, queue_depth=1)
    result = m.run(prog.prog_base, prog.prog_count)
    assert result.error is None
    return result


@pytest.mark.parametrize("flow", FLOWS)
def test_operands_read_once_when_they_fit(flow):
    # Default config, 128^3: A and B fit the scratchpad, so each byte is loaded exactly once
    # (plus the qparams of the 8 n-tiles, which share two slots without a FENCE).
    cfg, (M, K, N) = SMALL["default"], (128, 128, 128)
    g = np.random.default_rng(SEED)
    inputs = dict(A=g.integers(-128, 128, (M, K)).astype(np.int8),
                  B=g.integers(-128, 128, (K, N)).astype(np.int8),
                  bias=g.integers(-5000, 5000, N).astype(np.int32))
    prog = compiler.compile_gemm(cfg, (M, K), (K, N), bias=True, multiplier=1 << 30, shift=9,
                                 dataflow=flow)
    result = run_machine(cfg, prog, inputs)
    tiles = (M // cfg.rows if flow == "os" else 1) * (N // cfg.cols)
    qparam_bytes = tiles * len(isa.QPARAM_KINDS) * cfg.cols * 4
    assert result.counters["dma_bytes_read"] == M * K + K * N + qparam_bytes
    assert result.counters["dma_bytes_written"] == M * N
    assert "FENCE" not in [isa.decode(w)[0].name for w in prog.words]
    C = prog.unpack(result.dram)
    np.testing.assert_array_equal(C, reference_gemm(inputs["A"], inputs["B"], inputs["bias"],
                                                    1 << 30, 9))


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("K", [3, 6, 40])
def test_qparam_slot_reuse_over_many_tiles(flow, K):
    # Many n-tiles and m-blocks share the two qparam slots: K=40 relays the slot's release
    # through exec (no FENCE), K <= 2 chunks falls back to a FENCE; both bit-exact with
    # depth-1 queues, which deadlock if a token is missing or misplaced.
    cfg = SMALL["4x4"]
    check(cfg, 30, K, 23, flow, SEED, per_column=True, with_bias=True, out_dtype="int8",
          queue_depth=1)
    prog = compiler.compile_gemm(cfg, (30, K), (K, 23), per_column=True, bias=True,
                                 dataflow=flow)
    fences = [isa.decode(w)[0].name for w in prog.words].count("FENCE")
    plan = compiler._plan(cfg, isa.Dataflow[flow.upper()], 30, K, 23, True)
    assert (fences == 0) == (plan.k_chunks > plan.depth)


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("stride, padding", [(1, "same"), (2, "same"), (1, "valid"),
                                             (2, "valid"), (1, 1), (2, 2)])
def test_conv2d_matches_reference(flow, stride, padding):
    g = np.random.default_rng(SEED)
    x = g.integers(-128, 128, (2, 7, 6, 3)).astype(np.int8)
    w = g.integers(-128, 128, (3, 3, 3, 5)).astype(np.int8)
    bias = g.integers(-3000, 3000, 5).astype(np.int32)
    y, _ = Runtime(SMALL["4x4"]).conv2d(x, w, stride=stride, padding=padding, bias=bias,
                                        out_dtype="int32", dataflow=flow)
    ref = reference_conv(x, w, stride, padding) + bias
    np.testing.assert_array_equal(y, ref)


def reference_conv(x, w, stride, padding):
    """Direct NHWC convolution with zero padding (TF 'same' puts the extra row after)."""
    n, h, wd, _ = x.shape
    kh, kw, _, co = w.shape
    if padding == "valid":
        pads = (0, 0, 0, 0)
    elif padding == "same":
        oh, ow = -(-h // stride), -(-wd // stride)
        ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
        pads = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
    else:
        pads = (padding,) * 4
    xp = np.pad(x.astype(np.int64), ((0, 0), pads[:2], pads[2:], (0, 0)))
    oh = (xp.shape[1] - kh) // stride + 1
    ow = (xp.shape[2] - kw) // stride + 1
    out = np.zeros((n, oh, ow, co), np.int64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, w.astype(np.int64), axes=([1, 2, 3], [0, 1, 2]))
    return out


@pytest.mark.parametrize("name", ["4x4", "8x4", "default"])
def test_mlp_matches_layer_by_layer_golden(name):
    g = np.random.default_rng(SEED)
    x = g.integers(-128, 128, (23, 20)).astype(np.int8)
    layers, h = [], x
    for index, (k, n) in enumerate([(20, 17), (17, 9), (9, 5)]):
        w = g.integers(-128, 128, (k, n)).astype(np.int8)
        bias = g.integers(-2000, 2000, n).astype(np.int32)
        last = index == 2
        layer = dict(W=w, bias=bias, out_dtype="int32" if last else "int8")
        if not last:
            layer.update(multiplier=g.integers(1 << 29, 1 << 31, n), shift=g.integers(5, 12, n),
                         zero_point=0, clamp=(0, 127))
        layers.append(layer)
        acc = golden.matmul(h, w)
        if last:
            h = golden.output_pipeline(acc, bias=bias, out_int32=True)
        else:
            h = golden.output_pipeline(acc, bias=bias, multiplier=layer["multiplier"],
                                       shift=layer["shift"], lo=0, hi=127)
    y, report = Runtime(SMALL[name]).mlp(x, layers)
    np.testing.assert_array_equal(y, h)
    assert report["macs"] == 23 * (20 * 17 + 17 * 9 + 9 * 5)


def test_compile_errors_name_the_problem():
    cfg = SMALL["4x4"]
    with pytest.raises(compiler.CompileError, match="inner dimensions"):
        compiler.compile_gemm(cfg, (3, 4), (5, 2))
    with pytest.raises(compiler.CompileError, match="not available"):
        compiler.compile_gemm(cfg.replace(dataflow="ws"), (3, 4), (4, 2), dataflow="os")
    with pytest.raises(compiler.CompileError, match="window"):
        compiler.compile_gemm(cfg.replace(dram_size=4096), (100, 100), (100, 100))
    with pytest.raises(compiler.CompileError, match="clamp"):
        compiler.compile_gemm(cfg, (3, 4), (4, 2), clamp=(5, 1))


def test_default_dataflow_is_os_below_the_array_height():
    cfg = SMALL["4x4"]
    assert compiler.choose_dataflow(cfg, None, cfg.rows - 1) == isa.Dataflow.OS
    assert compiler.choose_dataflow(cfg, None, cfg.rows) == isa.Dataflow.WS
    assert compiler.choose_dataflow(cfg, None, None) == isa.Dataflow.WS
    assert compiler.choose_dataflow(cfg.replace(dataflow="ws"), None, 1) == isa.Dataflow.WS
    assert compiler.choose_dataflow(cfg, "ws", 1) == isa.Dataflow.WS
    ops = {isa.decode(w)[1]["dataflow"] for w in compiler.compile_gemm(cfg, (1, 9), (9, 6)).words
           if isa.decode(w)[0].name == "MATMUL"}
    assert ops == {isa.Dataflow.OS}
    check(cfg, 1, 37, 11, None, SEED, per_column=False, with_bias=True, out_dtype="int8")
    # A single dense layer follows the GEMM rule; chained layers stay WS.
    g = np.random.default_rng(SEED)
    x = g.integers(-128, 128, (2, 9)).astype(np.int8)
    layers = [dict(W=g.integers(-128, 128, (9, 5)).astype(np.int8), out_dtype="int32")]
    y, _ = Runtime(cfg).mlp(x, layers)
    np.testing.assert_array_equal(y, golden.matmul(x, layers[0]["W"]))
    layers = [dict(W=g.integers(-128, 128, (9, 5)).astype(np.int8), multiplier=1 << 30,
                   shift=3),
              dict(W=g.integers(-128, 128, (5, 3)).astype(np.int8), out_dtype="int32")]
    y, _ = Runtime(cfg).mlp(x, layers)
    h = golden.output_pipeline(golden.matmul(x, layers[0]["W"]), multiplier=1 << 30, shift=3)
    np.testing.assert_array_equal(y, golden.matmul(h, layers[1]["W"]))


def test_large_a_chunks_spread_over_all_banks():
    # ResNet-18 layer1 on the default config: 36 resident A chunks of 349 rows do not fit two
    # banks. The array streams chunk k while the LOAD fills chunk k + 1 and PRELOAD reads the
    # B tiles of chunk k, so those must be in three different single-port banks.
    cfg, (M, K, N) = SMALL["default"], (56 * 56, 9 * 64, 64)
    plan = compiler._plan(cfg, isa.Dataflow.WS, M, K, N, True)
    assert plan.a_resident and plan.b_resident
    banks = [row // cfg.sp_bank_rows for row in plan.a_slots]
    n_tiles = N // cfg.cols
    for k in range(plan.k_chunks):
        a_now, a_next = banks[k], banks[(k + 1) % plan.k_chunks]
        b_now = {plan.b_slots[j * plan.k_chunks + k] // cfg.sp_bank_rows for j in range(n_tiles)}
        assert a_now != a_next and a_now not in b_now and a_next not in b_now, k


@pytest.mark.parametrize("shape", [(70, 24, 12), (40, 40, 12)])
def test_spread_layout_runs_bit_exact(shape):
    # 4x4 with 64-row banks: these A chunks need all four banks (the second layout).
    cfg = SMALL["4x4"]
    plan = compiler._plan(cfg, isa.Dataflow.WS, *shape, True)
    assert len({row // cfg.sp_bank_rows for row in plan.a_slots}) == cfg.scratchpad_banks
    for depth in (1, None):
        check(cfg, *shape, "ws", SEED, per_column=True, with_bias=True, out_dtype="int8",
              queue_depth=depth)
