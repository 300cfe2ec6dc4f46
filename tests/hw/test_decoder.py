"""The hardware decoder agrees with the golden machine on what is illegal."""

import os
import random

import pytest
from amaranth.sim import Simulator

from boards.targets import BOARDS
from hw.config import Config
from hw.decoder import Decoder
from sim.machine import Machine, MachineError
from sw import isa

CONFIGS = {
    "icebreaker": BOARDS["icebreaker"].cfg,
    "4x4": Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1),
    "8x4-ws": Config(rows=8, cols=4, dataflow="ws", scratchpad_kib=8, accumulator_kib=1),
    "4x8-os": Config(rows=4, cols=8, dataflow="os", scratchpad_kib=8, accumulator_kib=2,
                     output_width=6),
}


def _random_word(rng, cfg):
    instr = rng.choice(list(isa.INSTRUCTIONS.values()))
    word = int(instr.opcode)
    for f in instr.all_fields[1:]:
        interesting = [0, 1, f.max, f.min, cfg.rows, cfg.cols, cfg.sp_rows - 1, cfg.acc_rows - 1,
                       cfg.sp_rows, 5, 6, 3, 127, -128, 2]
        value = rng.choice(interesting) if rng.random() < 0.7 else rng.randint(f.min, f.max)
        value = max(f.min, min(f.max, value))
        if f.name.startswith(("pop", "push")):
            value = int(rng.random() < 0.2)
        word |= (value & ((1 << f.width) - 1)) << f.lsb
    if rng.random() < 0.05:
        word ^= 1 << rng.randrange(isa.INSTR_BITS)
    if rng.random() < 0.03:
        word = rng.getrandbits(isa.INSTR_BITS)
    return word


def _golden_illegal(machine, word):
    """Legality as the machine's dispatcher sees it, with the pairing rule satisfied."""
    opcode = word & 0xF
    dataflow = (word >> 8) & 1
    machine._preload_pending = opcode == isa.Opcode.MATMUL and dataflow == isa.Dataflow.WS
    try:
        machine._check(0, word)
    except MachineError as e:
        assert e.cause == isa.ErrorCause.ILLEGAL_INSTRUCTION
        return True
    return False


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decoder_matches_golden_machine(name):
    cfg = CONFIGS[name]
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"SEED={seed}")
    rng = random.Random(seed)
    machine = Machine(cfg, bytearray(16))
    words = [_random_word(rng, cfg) for _ in range(1500)]
    words += [isa.encode("HALT"), 0, isa.encode("FENCE", push_next=1)]
    dut = Decoder(cfg)
    mismatches = []

    async def bench(ctx):
        for word in words:
            ctx.set(dut.word, word)
            illegal = ctx.get(dut.illegal)
            expected = _golden_illegal(machine, word)
            if illegal != expected:
                mismatches.append((hex(word), illegal, expected))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    assert not mismatches, mismatches[:5]
    legal = sum(not _golden_illegal(machine, w) for w in words)
    assert 100 < legal < len(words) - 100, "the random words must exercise both outcomes"
