"""Random instruction streams for the accelerator, with their golden outcome.

:func:`generate` builds a *token-correct* program: blocks of LOADs, then PRELOAD/MATMULs,
then CONFIG/STOREs, chained by dependency tokens (load -> exec -> store inside a block;
exec -> load and store -> exec release the scratchpad and accumulator to the next block), so
the result does not depend on how the hardware overlaps the queues. A block that loads the
accumulator or the quantisation parameters is preceded by a FENCE (those loads would race
with the previous block's STOREs). Every local row a program reads was written by that
program, so a machine that ran other programs before gives the same result.

One optional fault is injected:

- ``illegal``: an instruction is replaced by an illegal word (unknown opcode, reserved bit,
  bad field) -> ILLEGAL_INSTRUCTION at its index;
- ``window``: a LOAD/STORE row leaves the DMA window -> DMA_WINDOW, index, row address;
- ``deadlock``: a push is dropped or a pop added -> usually TOKEN_DEADLOCK (the golden
  model decides);
- ``overflow``: CONFIGs push store -> exec tokens that nobody pops -> TOKEN_OVERFLOW.

:func:`golden_result` runs the golden machine with the hardware's queue depth;
:func:`compare` applies sim/machine.py's rules (whole DRAM on success; cause, index and
address on an error, with the DRAM outside the window untouched).

``python -m sim.fuzz --programs N --seed S`` runs N programs on the RTL (Verilator, the
``fuzz_programs`` test of :mod:`sim.tb.tb_reliability`) and prints a summary;
``--replay SEED:FAULT:STALLS,...`` reruns programs from its log in order on one machine.
"""

import argparse
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field

from sw import isa
from sw.isa import ErrorCause, LoadDst

from .machine import Machine


__all__ = ["FAULTS", "MEMORY", "Program", "FaultyMachine", "generate",
           "golden_result", "compare", "dma_rows", "fuzz_config", "main"]

FAULTS = ("illegal", "window", "deadlock", "overflow")


@dataclass(frozen=True)
class MemoryMap:
    """Where a fuzz program keeps things in its DRAM image (byte addresses from 0)."""
    program: range = range(0, 8192)         # room for the TOKEN_OVERFLOW flood
    inputs: range = range(8192, 12288)      # LOAD sources
    outputs: range = range(12288, 13312)    # STORE destinations
    size: int = 16384                       # the AxiRam; [window end, size) is never written
    min_window_end: int = 13312


MEMORY = MemoryMap()


def fuzz_config():
    """The 4x4 configuration the CI fuzzes (imported late: sim/ runs without Amaranth)."""
    from hw.config import Config
    return Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1)


@dataclass
class Program:
    seed: int
    words: list
    image: bytes
    window: tuple
    fault: str | None = None
    notes: list = field(default_factory=list)

    @property
    def prog_base(self):
        return MEMORY.program.start

    def listing(self):
        lines = [f"seed={self.seed} fault={self.fault} window=({self.window[0]:#x},"
                 f" {self.window[1]:#x})"] + [f"  note: {n}" for n in self.notes]
        for pc, word in enumerate(self.words):
            try:
                instr, f = isa.decode(word)
                args = " ".join(f"{k}={v}" for k, v in f.items() if k != "opcode" and v)
                lines.append(f"  {pc:4d} {instr.name} {args}")
            except isa.IllegalInstruction as e:
                lines.append(f"  {pc:4d} {word:#034x} ({e})")
        return "\n".join(lines)


class FaultyMachine(Machine):
    """The golden machine with DRAM byte ranges that answer ``bad_ranges[range]`` (a DMA
    ErrorCause), as a bus slave with SLVERR/DECERR regions would."""

    def __init__(self, *args, bad_ranges=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.bad_ranges = dict(bad_ranges or {})

    def _row_fault(self, addr, nbytes):
        cause = super()._row_fault(addr, nbytes)
        if cause is not None:
            return cause
        for bad, bad_cause in self.bad_ranges.items():
            if addr < bad.stop and bad.start < addr + nbytes:
                return bad_cause
        return None


class _Builder:
    """Accumulates instructions and what local state they have defined."""

    def __init__(self, rng, cfg, sp_used, acc_used):
        self.rng, self.cfg = rng, cfg
        self.R, self.C, self.E = cfg.rows, cfg.cols, cfg.sp_row_elems
        self.sp_used, self.acc_used = sp_used, acc_used
        self.sp_written, self.acc_written, self.qslots = set(), set(), set()
        self.items = []        # [name, fields]; token flags are set on the fields later

    def add(self, name, **fields):
        item = [name, fields]
        self.items.append(item)
        return item

    def _span(self, written, limit, n):
        """A start row of ``n`` consecutive written rows below ``limit``, or None."""
        starts = [s for s in sorted(written) if s + n <= limit
                  and all(r in written for r in range(s, s + n))]
        return self.rng.choice(starts) if starts else None

    def _dram_rows(self, region, rows, row_bytes):
        rng = self.rng
        stride = rng.choice([0, row_bytes, row_bytes + rng.randrange(1, 24),
                             rng.randrange(row_bytes, 4 * row_bytes + 64)])
        if region is MEMORY.outputs and stride < row_bytes:
            stride = row_bytes
        span = stride * (rows - 1) + row_bytes
        addr = rng.randrange(region.start, region.stop - span + 1)
        return dict(dram_addr=addr, dram_stride=stride)

    def load(self, dst):
        rng = self.rng
        if dst == LoadDst.SP:
            rows = rng.randrange(1, 7)
            base = rng.randrange(0, self.sp_used - rows + 1)
            elems = rng.randrange(1, self.E + 1)
            self.sp_written.update(range(base, base + rows))
            elem_bytes = 1
        elif dst == LoadDst.ACC:
            rows = rng.randrange(1, 5)
            base = rng.randrange(0, self.acc_used - rows + 1)
            elems = rng.randrange(1, self.C + 1)
            self.acc_written.update(range(base, base + rows))
            elem_bytes = 4
        else:
            slot = rng.randrange(isa.QPARAM_SLOTS)
            base, rows = 3 * slot, len(isa.QPARAM_KINDS)
            elems = rng.choice([self.C, rng.randrange(1, self.C + 1)])
            self.qslots.add(slot)
            elem_bytes = 4
        return self.add("LOAD", dst=int(dst), local_addr=base, rows=rows, row_elems=elems,
                        **self._dram_rows(MEMORY.inputs, rows, elems * elem_bytes))

    def exec_op(self):
        rng = self.rng
        if self.cfg.has_ws and (not self.cfg.has_os or rng.random() < 0.5):
            k_rows = rng.randrange(1, self.R + 1)
            sp = self._span(self.sp_written, self.sp_used, k_rows)
            count = rng.randrange(1, 9)
            a = self._span(self.sp_written, self.sp_used, count)
            if sp is None or a is None:
                return
            acc = rng.randrange(0, self.acc_used - count + 1)
            self.add("PRELOAD", sp_addr=sp, k_rows=k_rows)
            rows = range(acc, acc + count)
            fields = dict(dataflow=int(isa.Dataflow.WS))
        else:
            count = rng.randrange(1, 9)
            a = self._span(self.sp_written, self.sp_used, count)
            b = self._span(self.sp_written, self.sp_used, count)
            if a is None or b is None:
                return
            acc = rng.randrange(0, self.acc_used - self.R + 1)
            rows = range(acc, acc + self.R)
            fields = dict(dataflow=int(isa.Dataflow.OS), b_addr=b)
        accumulate = int(all(r in self.acc_written for r in rows) and rng.random() < 0.5)
        self.add("MATMUL", accumulate=accumulate, a_addr=a, acc_addr=acc, count=count, **fields)
        self.acc_written.update(rows)

    def config(self, slot_ok):
        rng = self.rng
        lo = rng.randrange(-128, 128)
        hi = rng.randrange(lo, 128)
        if rng.random() < 0.3:
            lo, hi = -128, 127
        multiplier = (rng.randrange(-(1 << 31), 1 << 31) if rng.random() < 0.2
                      else rng.randrange(1 << 29, 1 << 31))
        return self.add("CONFIG", shift=rng.randrange(32), multiplier=multiplier,
                        zero_point=rng.choice([0, rng.randrange(-300, 300),
                                               rng.randrange(-(1 << 15), 1 << 15)]),
                        clamp_lo=lo, clamp_hi=hi,
                        per_column=int(slot_ok and rng.random() < 0.5),
                        bias_en=int(slot_ok and rng.random() < 0.5))

    def store(self):
        rng = self.rng
        rows = rng.randrange(1, 5)
        acc = self._span(self.acc_written, self.acc_used, rows)
        if acc is None:
            return None
        slot = rng.randrange(isa.QPARAM_SLOTS)
        self.config(slot in self.qslots)
        out_int32 = rng.randrange(2)
        elems = rng.randrange(1, self.C + 1)
        return self.add("STORE", acc_addr=acc, out_int32=out_int32, qslot=slot, rows=rows,
                        row_elems=elems,
                        **self._dram_rows(MEMORY.outputs, rows, elems * (4 if out_int32 else 1)))

    def words(self):
        return [isa.encode(name, **fields) for name, fields in self.items]


_EXEC_ATTEMPTS = 200


def _block(b, first):
    """One load -> exec -> store block; returns its (loads, execs, stores) items."""
    rng = b.rng
    special = [] if first else [d for d in (LoadDst.ACC, LoadDst.QPARAM) if rng.random() < 0.2]
    if special:
        b.add("FENCE")
    start_loads = len(b.items)
    for _ in range(rng.randrange(1, 5) + (3 if first else 0)):
        b.load(LoadDst.SP)
    for dst in special:
        b.load(dst)
    loads = b.items[start_loads:]
    wanted_execs = rng.randrange(1, 4)
    start_exec = len(b.items)
    # Every block needs an exec instruction: it carries the block's tokens (a block
    # without one would let its STOREs race with its accumulator LOADs).
    for attempt in range(_EXEC_ATTEMPTS):
        if len(b.items) > start_exec and attempt >= wanted_execs:
            break
        b.exec_op()
    else:
        raise RuntimeError("no exec instruction fits the rows loaded so far")
    execs = b.items[start_exec:]
    start_store = len(b.items)
    for _ in range(rng.randrange(1, 3)):
        b.store()
    stores = [item for item in b.items[start_store:] if item[0] == "STORE"]
    return loads, execs, b.items[start_store:] if stores else []


def _chain(blocks):
    """Token flags: load -> exec -> store in a block, exec -> load and store -> exec onwards."""
    prev = None
    for loads, execs, stores in blocks:
        if not execs:
            continue
        loads[-1][1]["push_next"] = 1
        execs[0][1]["pop_prev"] = 1
        if prev is not None:
            p_loads, p_execs, p_stores = prev
            p_execs[-1][1]["push_prev"] = 1
            loads[0][1]["pop_next"] = 1
            if p_stores:
                p_stores[-1][1]["push_prev"] = 1
                execs[0][1]["pop_next"] = 1
        if stores:
            execs[-1][1]["push_next"] = 1
            stores[0][1]["pop_prev"] = 1
        prev = (loads, execs, stores)


def generate(seed, cfg=None, fault=None, blocks=None):
    """A random program (see the module docstring); ``fault`` is one of :data:`FAULTS`."""
    if fault not in (None,) + FAULTS:
        raise ValueError(f"fault={fault!r} must be None or one of {FAULTS}")
    cfg = cfg or fuzz_config()
    rng = random.Random(seed)
    b = _Builder(rng, cfg, sp_used=min(cfg.sp_rows, 32), acc_used=min(cfg.acc_rows, 16))
    parts = []
    for index in range(blocks or rng.randrange(1, 5)):
        if index and rng.random() < 0.25:
            b.add("FENCE")
        parts.append(_block(b, index == 0))
    _chain(parts)
    notes = []
    if fault == "overflow":
        b.add("FENCE")
        for _ in range(isa.TOKEN_MAX + 1 + rng.randrange(3)):
            b.config(False)[1]["push_prev"] = 1
        notes.append("CONFIG flood pushing store -> exec")
    b.add("HALT")
    window_end = rng.randrange(MEMORY.min_window_end, MEMORY.size + 1, 4)
    if fault == "window":
        notes.append(_window_fault(rng, b, window_end))
    words = b.words()
    if fault == "illegal":
        notes.append(_illegal_fault(rng, cfg, words))
    elif fault == "deadlock":
        notes.append(_token_fault(rng, b, words))
    image = bytearray(rng.randbytes(MEMORY.size))
    code = isa.to_bytes(words)
    if len(code) > len(MEMORY.program):
        raise ValueError(f"seed {seed}: program of {len(words)} words does not fit")
    image[MEMORY.program.start:MEMORY.program.start + len(code)] = code
    return Program(seed, words, bytes(image), (0, window_end), fault, notes)


def _window_fault(rng, b, window_end):
    dma = [item for item in b.items if item[0] in ("LOAD", "STORE")]
    name, f = item = rng.choice(dma)
    elem_bytes = 1 if name == "LOAD" and f["dst"] == LoadDst.SP else (
        4 if name == "LOAD" or f["out_int32"] else 1)
    row_bytes = f["row_elems"] * elem_bytes
    bad = rng.randrange(f["rows"])
    stride = max(f["dram_stride"], row_bytes)
    # Row `bad` ends past the window (by 1 byte .. a whole row or far beyond).
    overshoot = rng.choice([1, rng.randrange(1, row_bytes + 1), rng.randrange(1, 4096)])
    f["dram_stride"] = stride
    f["dram_addr"] = window_end - row_bytes + overshoot - bad * stride
    return f"instruction {b.items.index(item)} ({name}) row {bad} leaves the window"


_ILLEGAL_KINDS = ("opcode", "reserved", "field", "flags")


def _illegal_fault(rng, cfg, words):
    pc = rng.randrange(len(words))
    instr, f = isa.decode(words[pc])
    kind = rng.choice(_ILLEGAL_KINDS)
    if kind == "opcode":
        words[pc] = (words[pc] & ~0xF) | rng.choice(
            [op for op in range(16) if op not in isa.BY_OPCODE])
    elif kind == "reserved":
        mask = instr.reserved_mask
        bits = [i for i in range(isa.INSTR_BITS) if mask >> i & 1]
        words[pc] |= 1 << rng.choice(bits)
    elif kind == "flags" or instr.name in ("FENCE", "HALT"):
        if instr.name in ("FENCE", "HALT"):
            flag = rng.choice(["pop_prev", "pop_next", "push_prev", "push_next"])
        elif instr.name == "LOAD":
            flag = rng.choice(["pop_prev", "push_prev"])
        elif instr.name in ("STORE", "CONFIG"):
            flag = rng.choice(["pop_next", "push_next"])
        else:
            return _illegal_fault(rng, cfg, words)
        f[flag] = 1
        words[pc] = _encode(instr, f)
        kind = f"flag {flag}"
    else:
        choices = {
            "LOAD": lambda: [("rows", 0), ("row_elems", 0), ("dst", 3),
                             ("row_elems", (cfg.sp_row_elems if f["dst"] == LoadDst.SP
                                            else cfg.cols) + 1),
                             ("local_addr", cfg.sp_rows if f["dst"] == LoadDst.SP
                              else cfg.acc_rows)],
            "STORE": lambda: [("rows", 0), ("row_elems", cfg.cols + 1),
                              ("acc_addr", cfg.acc_rows)],
            "CONFIG": lambda: [("clamp_lo", f["clamp_hi"] + 1), ("clamp_hi", 128)],
            "PRELOAD": lambda: [("k_rows", 0), ("k_rows", cfg.rows + 1),
                                ("sp_addr", cfg.sp_rows)],
            "MATMUL": lambda: [("count", 0), ("a_addr", cfg.sp_rows),
                               ("acc_addr", cfg.acc_rows)],
        }[instr.name]()
        name, value = rng.choice(choices)
        f[name] = value
        words[pc] = _encode(instr, f)
        kind = f"{name}={value}"
    return f"instruction {pc} ({instr.name}) made illegal: {kind}"


def _encode(instr, f):
    return isa.encode(instr.name, **{k: v for k, v in f.items() if k != "opcode"})


def _token_fault(rng, b, words):
    pushes = [(pc, flag) for pc, (_, f) in enumerate(b.items)
              for flag in ("push_prev", "push_next") if f.get(flag)]
    if pushes and rng.random() < 0.6:
        pc, flag = rng.choice(pushes)
        instr, f = isa.decode(words[pc])
        f[flag] = 0
        words[pc] = _encode(instr, f)
        return f"instruction {pc} ({instr.name}) lost its {flag}"
    allowed = {"LOAD": ("pop_next",), "PRELOAD": ("pop_prev", "pop_next"),
               "MATMUL": ("pop_prev", "pop_next"), "STORE": ("pop_prev",),
               "CONFIG": ("pop_prev",)}
    candidates = [pc for pc, (name, _) in enumerate(b.items) if name in allowed]
    pc = rng.choice(candidates)
    instr, f = isa.decode(words[pc])
    flag = rng.choice(allowed[instr.name])
    f[flag] = 1
    words[pc] = _encode(instr, f)
    return f"instruction {pc} ({instr.name}) got an extra {flag}"


def dma_rows(words):
    """``[(pc, name, row, addr, nbytes)]`` of every DMA row of the LOADs and STOREs."""
    out = []
    for pc, word in enumerate(words):
        try:
            instr, f = isa.decode(word)
        except isa.IllegalInstruction:
            continue
        if instr.name not in ("LOAD", "STORE"):
            continue
        wide = (instr.name == "LOAD" and f["dst"] != LoadDst.SP) or (
            instr.name == "STORE" and f["out_int32"])
        nbytes = f["row_elems"] * (4 if wide else 1)
        for r in range(f["rows"]):
            out.append((pc, instr.name, r, (f["dram_addr"] + r * f["dram_stride"]) % (1 << 32),
                        nbytes))
    return out


def golden_result(cfg, program, bad_ranges=None):
    machine = FaultyMachine(cfg, program.image, dram_base=0, window=program.window,
                            queue_depth=cfg.queue_depth, bad_ranges=bad_ranges)
    return machine.run(program.prog_base, len(program.words))


def compare(program, gold, rtl_dram, rtl_error, rtl_macs=None, burst_bytes=None):
    """Differences between the RTL outcome and the golden one (an empty list: they agree).

    For DMA_SLVERR / DMA_DECERR the hardware reports the address of the AXI burst that got
    the response, the golden model the row's: with ``burst_bytes`` the RTL address may be
    up to one burst below the golden one.
    """
    problems = []
    want = gold.error.as_tuple() if gold.error is not None else None
    got = tuple(rtl_error) if rtl_error is not None else None
    if (burst_bytes and want is not None and got is not None and want[:2] == got[:2]
            and want[0] in (ErrorCause.DMA_SLVERR, ErrorCause.DMA_DECERR)
            and want[2] - burst_bytes < got[2] <= want[2]):
        want = got
    if want != got:
        problems.append(f"error: rtl {_fmt_error(got)} golden {_fmt_error(want)}"
                        + (f" ({gold.error})" if gold.error is not None else ""))
    end = program.window[0] + program.window[1]
    if rtl_dram[end:] != program.image[end:] or rtl_dram[:program.window[0]] != \
            program.image[:program.window[0]]:
        problems.append("rtl wrote DRAM outside the window")
    if want is None and got is None:
        if rtl_dram != gold.dram:
            diff = [i for i in range(len(rtl_dram)) if rtl_dram[i] != gold.dram[i]]
            problems.append(f"DRAM differs at {len(diff)} bytes, first {diff[0]:#x}:"
                            f" rtl {rtl_dram[diff[0]]:#04x} golden {gold.dram[diff[0]]:#04x}")
        if rtl_macs is not None and rtl_macs != gold.counters["macs"]:
            problems.append(f"MACs: rtl {rtl_macs} golden {gold.counters['macs']}")
    return problems


def _fmt_error(error):
    if error is None:
        return "success"
    cause, pc, addr = error
    return f"{ErrorCause(cause).name} pc={pc} addr={addr:#x}"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m sim.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--programs", type=int, default=100, help="programs to run")
    parser.add_argument("--seed", type=int, default=None, help="master seed (default random)")
    parser.add_argument("--fault-rate", type=float, default=0.5,
                        help="fraction of programs with an injected fault")
    parser.add_argument("--replay", metavar="SEED:FAULT:STALLS,...",
                        help="run these programs (as the fuzz log prints them) in order instead")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    from hw import regmap  # noqa: F401  (sets up the YoWASP tools)
    from .backends import ensure_verilog
    from .runner import SIM_BUILD_ROOT, run_cocotb

    cfg = fuzz_config()
    verilog_path, key = ensure_verilog(cfg)
    summary_path = SIM_BUILD_ROOT / "jobs" / f"fuzz-{os.getpid()}.json"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    if args.replay:
        try:
            run_cocotb(verilog_sources=[verilog_path], toplevel="tensor_core",
                       test_module="sim.tb.tb_reliability", build_name=f"tensor_core_{key}",
                       testcase="replay", extra_env={"RELIABILITY_CONFIG": cfg.to_json(),
                                                     "FUZZ_REPLAY": args.replay})
        except (AssertionError, RuntimeError) as e:
            print(f"fuzz: replay differs from the golden model ({e})")
            return 1
        print("fuzz: replay matches the golden model")
        return 0
    print(f"fuzz: {args.programs} programs, SEED={seed}", flush=True)
    start = time.monotonic()
    failed = None
    try:
        run_cocotb(verilog_sources=[verilog_path], toplevel="tensor_core",
                   test_module="sim.tb.tb_reliability", build_name=f"tensor_core_{key}",
                   testcase="fuzz_programs", extra_env={
                       "RELIABILITY_CONFIG": cfg.to_json(), "SEED": seed,
                       "FUZZ_PROGRAMS": args.programs, "FUZZ_FAULT_RATE": args.fault_rate,
                       "FUZZ_SUMMARY": summary_path})
    except (AssertionError, RuntimeError) as e:
        failed = e
    elapsed = time.monotonic() - start
    if not summary_path.exists():
        print(f"fuzz: the simulation did not finish ({failed})")
        return 2
    summary = json.loads(summary_path.read_text())
    print(f"fuzz: SEED={seed} programs run {summary['programs']}, faults injected"
          f" {summary['faults']} {summary['by_fault']}, outcomes {summary['outcomes']},"
          f" mismatches {len(summary['mismatches'])}, {elapsed:.1f} s")
    for mismatch in summary["mismatches"]:
        print(mismatch)
    return 1 if summary["mismatches"] or failed else 0


if __name__ == "__main__":
    sys.exit(main())
