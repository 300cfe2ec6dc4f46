"""sim/machine.py: each instruction against hand-built numpy, illegal cases, faults, tokens."""

import os
import random

import numpy as np
import pytest

from hw.config import Config
from sim import golden
from sim.machine import Machine, run_program
from sw import isa
from sw.isa import ErrorCause

SEED = int(os.environ.get("SEED", random.randrange(1 << 30)))
print(f"SEED={SEED}")

CFG = Config(rows=4, cols=4, scratchpad_kib=1, accumulator_kib=1)
R, C, E = CFG.rows, CFG.cols, CFG.sp_row_elems
HALT = isa.encode("HALT")


def enc(name, **values):
    return isa.encode(name, **values)


def machine_run(cfg, words, dram, **kw):
    return run_program(cfg, words, bytes(dram), **kw)


def ok(result):
    assert result.error is None, result.error
    return result


def rng():
    return np.random.default_rng(SEED)


def i8(data):
    return np.asarray(data, dtype=np.int8).tobytes()


def test_load_sp_2d_strided_and_zero_fill_then_store_int32():
    g = rng()
    src = g.integers(-128, 128, (3, 10)).astype(np.int8)
    # LOAD 3 rows x 3 elems from a 10-wide matrix; WS MATMUL with identity weights copies
    # them into the accumulator, STORE int32 writes them back.
    words = [
        enc("LOAD", dst=0, local_addr=5, rows=3, row_elems=3, dram_addr=2, dram_stride=10),
        enc("LOAD", dst=0, local_addr=20, rows=R, row_elems=C, dram_addr=64, dram_stride=C,
            push_next=1),
        enc("PRELOAD", sp_addr=20, k_rows=R, pop_prev=1),
        enc("MATMUL", a_addr=5, acc_addr=7, count=3, push_next=1),
        enc("STORE", acc_addr=7, out_int32=1, rows=3, row_elems=C, dram_addr=128,
            dram_stride=4 * C, pop_prev=1),
        HALT,
    ]
    dram = bytearray(256)
    dram[:30] = src.tobytes()
    dram[64:64 + R * C] = i8(np.eye(R, C))
    r = ok(machine_run(CFG, words, dram))
    out = np.frombuffer(r.dram, "<i4", 3 * C, 128).reshape(3, C)
    expected = np.zeros((3, C), np.int64)
    expected[:, :3] = src[:, 2:5]
    np.testing.assert_array_equal(out, expected)
    assert r.counters["dma_bytes_read"] == 9 + R * C
    assert r.counters["dma_bytes_written"] == 3 * C * 4
    assert r.counters["macs"] == 3 * R * C
    assert r.counters["instructions"] == len(words)


def test_ws_matmul_accumulate_and_partial_krows():
    g = rng()
    a = g.integers(-128, 128, (6, R)).astype(np.int8)
    w = g.integers(-128, 128, (R, C)).astype(np.int8)
    m = Machine(CFG, b"")
    m._preload_pending = False
    m.sp[0:6, :R] = a
    m.sp[10:10 + R, :C] = w
    m._do_preload(0, dict(sp_addr=10, k_rows=2))
    m._do_matmul(0, dict(dataflow=0, accumulate=0, a_addr=0, b_addr=0, acc_addr=3, count=6))
    wz = w.astype(np.int64).copy()
    wz[2:] = 0
    first = golden.matmul(a, wz)
    np.testing.assert_array_equal(m.acc[3:9], first)
    m._do_preload(0, dict(sp_addr=10, k_rows=R))
    m._do_matmul(0, dict(dataflow=0, accumulate=1, a_addr=0, b_addr=0, acc_addr=3, count=6))
    np.testing.assert_array_equal(m.acc[3:9], first + golden.matmul(a, w))


def test_os_matmul():
    g = rng()
    K = 7
    at = g.integers(-128, 128, (K, R)).astype(np.int8)
    b = g.integers(-128, 128, (K, C)).astype(np.int8)
    m = Machine(CFG, b"")
    m.sp[0:K, :R] = at
    m.sp[40:40 + K, :C] = b
    m._do_matmul(0, dict(dataflow=1, accumulate=0, a_addr=0, b_addr=40, acc_addr=2, count=K))
    np.testing.assert_array_equal(m.acc[2:2 + R], golden.matmul(at.T, b))


def test_acc_wraps_at_acc_width():
    cfg = CFG.replace(acc_width=16)
    m = Machine(cfg, b"")
    m.sp[0, :R] = -128
    m.sp[8:8 + R, :C] = -128
    for accumulate in (0, 1):
        m._do_matmul(0, dict(dataflow=1, accumulate=accumulate, a_addr=0, b_addr=8,
                             acc_addr=0, count=1))
    assert m.acc[0, 0] == golden.wrap(2 * 128 * 128, 16) == -32768


def test_store_requantises_per_tensor_and_per_column_with_bias():
    g = rng()
    acc = g.integers(-(1 << 20), 1 << 20, (3, C))
    acc[0, 0] = -(1 << 31)
    bias = g.integers(-1000, 1000, C)
    mult = g.integers(1 << 30, (1 << 31) - 1, C)
    shift = g.integers(0, 32, C)
    dram = bytearray(512)
    dram[0:3 * C * 4] = acc.astype("<i4").tobytes()
    dram[100:100 + 12 * C] = np.stack([bias, mult, shift]).astype("<i4").tobytes()
    words = [
        enc("LOAD", dst=1, local_addr=0, rows=3, row_elems=C, dram_addr=0, dram_stride=4 * C),
        enc("LOAD", dst=2, local_addr=3, rows=3, row_elems=C, dram_addr=100, dram_stride=4 * C),
        enc("FENCE"),
        enc("CONFIG", multiplier=1 << 30, shift=3, zero_point=-5, clamp_lo=-100, clamp_hi=90),
        enc("STORE", rows=3, row_elems=C, dram_addr=300, dram_stride=C),
        enc("CONFIG", per_column=1, bias_en=1, zero_point=7, clamp_lo=-128, clamp_hi=127),
        enc("STORE", rows=3, row_elems=C - 1, qslot=1, dram_addr=400, dram_stride=C),
        HALT,
    ]
    r = ok(machine_run(CFG, words, dram))
    got = np.frombuffer(r.dram, np.int8, 3 * C, 300).reshape(3, C)
    np.testing.assert_array_equal(got, golden.requantize(acc, 1 << 30, 3, -5, -100, 90))
    got = np.frombuffer(r.dram, np.int8, 3 * C, 400).reshape(3, C)[:, :C - 1]
    want = golden.output_pipeline(acc, bias=bias, multiplier=mult, shift=shift, zero_point=7)
    np.testing.assert_array_equal(got, want[:, :C - 1])


def test_load_acc_wraps_to_acc_width():
    cfg = CFG.replace(acc_width=16)
    dram = np.array([70000, -1, 32768, 5], "<i4").tobytes()
    words = [enc("LOAD", dst=1, local_addr=0, rows=1, row_elems=4, dram_addr=0, dram_stride=0),
             enc("FENCE"),
             enc("STORE", out_int32=1, rows=1, row_elems=4, dram_addr=16, dram_stride=0), HALT]
    r = ok(machine_run(cfg, words, dram + bytes(16)))
    np.testing.assert_array_equal(np.frombuffer(r.dram, "<i4", 4, 16),
                                  golden.wrap([70000, -1, 32768, 5], 16))


ILLEGAL = [
    ("unknown opcode", 0xF),
    ("reserved bit", HALT | (1 << 100)),
    ("HALT with flags", HALT | (1 << 4)),
    ("load pop_prev", enc("LOAD", rows=1, row_elems=1, pop_prev=1)),
    ("load push_prev", enc("LOAD", rows=1, row_elems=1, push_prev=1)),
    ("store pop_next", enc("STORE", rows=1, row_elems=1, pop_next=1)),
    ("store push_next", enc("STORE", rows=1, row_elems=1, push_next=1)),
    ("config push_next", enc("CONFIG", push_next=1)),
    ("load rows 0", enc("LOAD", rows=0, row_elems=1)),
    ("load row_elems 0", enc("LOAD", rows=1, row_elems=0)),
    ("store rows 0", enc("STORE", rows=0, row_elems=1)),
    ("load sp too wide", enc("LOAD", rows=1, row_elems=E + 1)),
    ("load acc too wide", enc("LOAD", dst=1, rows=1, row_elems=C + 1)),
    ("load qparam too wide", enc("LOAD", dst=2, rows=1, row_elems=C + 1)),
    ("store too wide", enc("STORE", rows=1, row_elems=C + 1)),
    ("load sp past end", enc("LOAD", local_addr=CFG.sp_rows - 1, rows=2, row_elems=1)),
    ("load acc past end", enc("LOAD", dst=1, local_addr=CFG.acc_rows - 1, rows=2, row_elems=1)),
    ("load qparam past row 5", enc("LOAD", dst=2, local_addr=4, rows=3, row_elems=1)),
    ("load dst 3", enc("LOAD", dst=3, rows=1, row_elems=1)),
    ("store past end", enc("STORE", acc_addr=CFG.acc_rows - 2, rows=3, row_elems=1)),
    ("preload k_rows 0", enc("PRELOAD", k_rows=0)),
    ("preload k_rows > R", enc("PRELOAD", k_rows=R + 1)),
    ("preload past end", enc("PRELOAD", sp_addr=CFG.sp_rows - 1, k_rows=2)),
    ("ws matmul without preload", enc("MATMUL", count=1)),
    ("matmul count 0", enc("MATMUL", dataflow=1, count=0)),
    ("os matmul a past end", enc("MATMUL", dataflow=1, a_addr=CFG.sp_rows - 1, count=2)),
    ("os matmul b past end", enc("MATMUL", dataflow=1, b_addr=CFG.sp_rows - 1, count=2)),
    ("os matmul acc past end", enc("MATMUL", dataflow=1, acc_addr=CFG.acc_rows - R + 1, count=1)),
    ("config lo > hi", enc("CONFIG", clamp_lo=5, clamp_hi=4)),
    ("config hi outside", enc("CONFIG", clamp_lo=0, clamp_hi=128)),
    ("config lo outside", enc("CONFIG", clamp_lo=-129, clamp_hi=0)),
]


@pytest.mark.parametrize("word", [w for _, w in ILLEGAL], ids=[n for n, _ in ILLEGAL])
def test_illegal_instruction_reports_its_index(word):
    words = [enc("CONFIG"), enc("FENCE"), word, HALT]
    r = machine_run(CFG, words, b"")
    assert r.error.as_tuple()[:2] == (ErrorCause.ILLEGAL_INSTRUCTION, 2)


@pytest.mark.parametrize("name, words", [
    ("ws matmul past acc", [enc("PRELOAD", k_rows=1), enc("MATMUL", acc_addr=CFG.acc_rows - 1, count=2)]),
    ("ws matmul a past sp", [enc("PRELOAD", k_rows=1), enc("MATMUL", a_addr=CFG.sp_rows - 1, count=2)]),
    ("second preload pending", [enc("PRELOAD", k_rows=1), enc("PRELOAD", k_rows=1)]),
    ("two matmuls one preload", [enc("PRELOAD", k_rows=1), enc("MATMUL", count=1),
                                  enc("MATMUL", count=1)]),
])
def test_illegal_exec_sequences(name, words):
    r = machine_run(CFG, words + [HALT], b"")
    assert r.error.as_tuple()[:2] == (ErrorCause.ILLEGAL_INSTRUCTION, len(words) - 1)


def test_os_matmul_between_preload_and_ws_matmul_is_fine():
    words = [enc("PRELOAD", k_rows=1), enc("MATMUL", dataflow=1, count=1), enc("MATMUL", count=1),
             HALT]
    ok(machine_run(CFG, words, b""))


@pytest.mark.parametrize("dataflow, words", [
    ("os", [enc("PRELOAD", k_rows=1)]),
    ("os", [enc("MATMUL", count=1)]),
    ("ws", [enc("MATMUL", dataflow=1, count=1)]),
])
def test_dataflow_not_built_is_illegal(dataflow, words):
    r = machine_run(CFG.replace(dataflow=dataflow), words + [HALT], b"")
    assert r.error.as_tuple()[:2] == (ErrorCause.ILLEGAL_INSTRUCTION, len(words) - 1)


def test_output_width_limits_config_clamps():
    cfg = CFG.replace(output_width=4)
    assert machine_run(cfg, [enc("CONFIG", clamp_lo=-8, clamp_hi=7), HALT], b"").error is None
    r = machine_run(cfg, [enc("CONFIG", clamp_lo=-8, clamp_hi=8), HALT], b"")
    assert r.error.as_tuple()[:2] == (ErrorCause.ILLEGAL_INSTRUCTION, 0)


def test_running_past_the_end_is_illegal_at_prog_count():
    r = machine_run(CFG, [enc("CONFIG")], b"")
    assert r.error.as_tuple() == (ErrorCause.ILLEGAL_INSTRUCTION, 1, 0)


def test_load_window_fault_after_partial_rows():
    src = np.arange(1, 41, dtype=np.int8)
    words = [enc("LOAD", local_addr=3, rows=5, row_elems=4, dram_addr=64, dram_stride=10), HALT]
    image = bytearray(128)
    image[:32] = isa.to_bytes(words)
    image[64:104] = src.tobytes()
    # rows at 64, 74, 84 end by 88 <= 90; the row at 94 ends at 98 > 90.
    m = Machine(CFG, image, window=(0, 90))
    r = m.run(0, len(words))
    assert r.error.as_tuple() == (ErrorCause.DMA_WINDOW, 0, 94)
    for row in range(3):
        np.testing.assert_array_equal(m.sp[3 + row, :4], src[10 * row:10 * row + 4])
    assert not m.sp[6:8].any()
    m = Machine(CFG, image, window=(0, 128))
    assert m.run(0, len(words)).error is None
    np.testing.assert_array_equal(m.sp[6, :4], src[30:34])


def _partial_store(window):
    """STORE 4 rows of 16 bytes at 200, 220, 240, 260; the program lives at 0."""
    words = [enc("LOAD", dst=1, rows=4, row_elems=C, dram_addr=100, dram_stride=4 * C),
             enc("FENCE"),
             enc("STORE", out_int32=1, rows=4, row_elems=C, dram_addr=200, dram_stride=20),
             HALT]
    image = bytearray(512)
    image[:64] = isa.to_bytes(words)
    acc = np.arange(1, 4 * C + 1).astype("<i4")
    image[100:100 + acc.nbytes] = acc.tobytes()
    return Machine(CFG, image, window=window).run(0, len(words)), acc.reshape(4, C)


def test_store_fault_keeps_earlier_rows():
    r, acc = _partial_store((0, 512))
    assert r.error is None
    r, acc = _partial_store((0, 250))
    assert r.error.as_tuple() == (ErrorCause.DMA_WINDOW, 2, 240)
    for row, addr in enumerate((200, 220)):
        np.testing.assert_array_equal(np.frombuffer(r.dram, "<i4", C, addr), acc[row])
    assert r.dram[240:256] == bytes(16)


def test_load_below_window_and_outside_dram():
    words = [enc("LOAD", rows=2, row_elems=4, dram_addr=96, dram_stride=-32 & 0xFFFFFFFF), HALT]
    image = bytearray(256)
    image[128:160] = isa.to_bytes(words)
    r = Machine(CFG, image, window=(80, 176)).run(128, 2)
    assert r.error.as_tuple() == (ErrorCause.DMA_WINDOW, 0, 64)
    r = Machine(CFG, image, window=(0, 1 << 20)).run(128, 2)
    assert r.error is None
    words = [enc("LOAD", rows=1, row_elems=4, dram_addr=254, dram_stride=0), HALT]
    image[128:160] = isa.to_bytes(words)
    r = Machine(CFG, image, window=(0, 1 << 20)).run(128, 2)
    assert r.error.as_tuple() == (ErrorCause.DMA_DECERR, 0, 254)


def test_program_fetch_outside_window():
    image = bytearray(64)
    image[32:48] = isa.to_bytes([HALT])
    r = Machine(CFG, image, window=(0, 40)).run(32, 1)
    assert r.error.as_tuple() == (ErrorCause.DMA_WINDOW, 0, 32)


def test_token_deadlock_reports_oldest_blocked():
    words = [enc("CONFIG"),
             enc("STORE", rows=1, row_elems=1, pop_prev=1),
             enc("MATMUL", dataflow=1, count=1, pop_prev=1),
             HALT]
    r = machine_run(CFG, words, b"")
    assert r.error.as_tuple()[:2] == (ErrorCause.TOKEN_DEADLOCK, 1)


def test_tokens_order_queues():
    # The store waits for the exec push; the load of new data waits for the store-relayed token.
    words = [enc("MATMUL", dataflow=1, count=1, pop_next=1),  # needs a token from store
             enc("STORE", rows=1, row_elems=1, push_prev=1),
             HALT]
    ok(machine_run(CFG, words, bytes(64)))


def test_token_overflow():
    push = enc("LOAD", rows=1, row_elems=1, push_next=1)
    words = [push] * isa.TOKEN_MAX + [HALT]
    ok(machine_run(CFG, words, bytes(16)))
    r = machine_run(CFG, [push] * (isa.TOKEN_MAX + 1) + [HALT], bytes(16))
    assert r.error.as_tuple()[:2] == (ErrorCause.TOKEN_OVERFLOW, isa.TOKEN_MAX)


def test_finite_queue_deadlock_and_fence():
    # With depth 1 the dispatcher cannot reach the producer behind a blocked consumer.
    words = [enc("CONFIG"), enc("STORE", rows=1, row_elems=1, pop_prev=1),
             enc("STORE", rows=1, row_elems=1),
             enc("MATMUL", dataflow=1, count=1, push_next=1), HALT]
    assert machine_run(CFG, words, bytes(64)).error is None
    r = machine_run(CFG, words, bytes(64), queue_depth=1)
    assert r.error.as_tuple()[:2] == (ErrorCause.TOKEN_DEADLOCK, 1)
    # A FENCE before the producer deadlocks in any depth.
    words.insert(3, enc("FENCE"))
    r = machine_run(CFG, words, bytes(64))
    assert r.error.as_tuple()[:2] == (ErrorCause.TOKEN_DEADLOCK, 1)


def test_halt_stops_before_later_instructions():
    words = [HALT, 0xF]
    r = machine_run(CFG, words, b"")
    assert r.error is None and r.counters["instructions"] == 1
