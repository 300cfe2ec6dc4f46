"""The controller alone: dispatch order, dependency tokens, deadlock, overflow, errors, abort.

The fetcher and the three units are Python models with random latencies; a monitor keeps
its own token counters from the pushes and grants it samples at every clock edge, so a
grant without a token (or a lost push) fails the test.
"""

import os
import random

import pytest
from amaranth.sim import Simulator

from hw.config import Config
from hw.controller import QUEUE_DEPTH, Controller
from sw import isa
from sw.isa import ErrorCause, TOKEN_MAX

CFG = Config(rows=4, cols=4, scratchpad_kib=4, accumulator_kib=1)
# One-entry queues whose units run the entry in place: the oldest waiting instruction is
# told by dispatch order, not by comparing pcs.
QUEUE_CFG = CFG.replace(queue_depth=1, unit_commands="queue")
# unit_reports="registered": completions and faults reach the controller a cycle late, from
# a register.
CONFIGS = {"copy": CFG, "queue": QUEUE_CFG,
           "copy_registered": CFG.replace(unit_reports="registered"),
           "queue_registered": QUEUE_CFG.replace(unit_reports="registered")}
every_config = pytest.mark.parametrize("cfg", CONFIGS.values(), ids=CONFIGS.keys())
UNITS = ("load", "exec", "store")
# counter: (pushing unit, its flag, popping unit, its flag)
EDGES = {
    "l2e": ("load", "push_next", "exec", "pop_prev"),
    "e2l": ("exec", "push_prev", "load", "pop_next"),
    "e2s": ("exec", "push_next", "store", "pop_prev"),
    "s2e": ("store", "push_prev", "exec", "pop_next"),
}
# The token flags each queue may use (load has no previous queue, store no next one).
FLAGS = {
    "load": ("pop_next", "push_next"),
    "exec": ("pop_prev", "pop_next", "push_prev", "push_next"),
    "store": ("pop_prev", "push_prev"),
}


def _seed():
    seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
    print(f"SEED={seed}")
    return seed


def load(**flags):
    return isa.encode("LOAD", rows=1, row_elems=1, **flags)


def preload(**flags):
    return isa.encode("PRELOAD", k_rows=1, **flags)


def matmul(**flags):
    return isa.encode("MATMUL", count=1, **flags)


def store(**flags):
    return isa.encode("STORE", rows=1, row_elems=1, **flags)


def _unit_of(word):
    return {isa.Queue.LOAD: "load", isa.Queue.EXEC: "exec",
            isa.Queue.STORE: "store"}.get(isa.decode(word)[0].queue)


class Bench:
    """Controller + models of the fetcher and the units; ``run()`` returns what happened."""

    def __init__(self, programs, seed, fault=None, abort_at=None, max_latency=4,
                 cycles=20_000, cfg=CFG):
        self.cfg = cfg
        self.dut = Controller(cfg)
        self.programs = programs       # run one after the other, each after done / error
        self.rng = random.Random(seed)
        self.fault = fault             # (program index, pc, cause, addr) raised by a unit
        self.abort_at = abort_at       # cycle of the first program to pulse CTRL.abort
        self.max_latency = max_latency
        self.cycles = cycles
        self.executed = {name: [] for name in UNITS}   # (program index, pc) in completion order
        self.outcomes = []             # (done, error, cause, pc, addr) per program
        self.program = 0
        self.token_errors = []
        self.pops = 0
        self.events = []               # (cycle, "grant" / "complete", unit, pc)

    def _fetch(self):
        dut = self.dut

        async def fetcher(ctx):
            entries, index, offered = [], 0, False
            async for _, _, start, flush, ready in ctx.tick().sample(
                    dut.fetch_start, dut.fetch_flush, dut.words.ready):
                if offered and ready:
                    index += 1
                if start:
                    entries, index = self.programs[self.program], 0
                if flush:
                    entries = []
                offered = index < len(entries) and (offered and not ready
                                                    or self.rng.random() < 0.7)
                ctx.set(dut.words.valid, offered)
                if offered:
                    entry = entries[index]
                    if isinstance(entry, tuple):      # a fetch fault at this pc
                        ctx.set(dut.words.payload, {"fault": 1, "cause": entry[0],
                                                    "addr": entry[1]})
                    else:
                        ctx.set(dut.words.payload, {"word": entry, "fault": 0})
        return fetcher

    def _unit(self, name):
        """A unit model. With ``unit_commands="copy"`` it takes its queue's head when idle;
        with "queue" it runs the head in place and takes it after its grant (exec) or when it
        completes (load, store)."""
        dut = self.dut
        port, cmd = getattr(dut, name), getattr(dut, f"{name}_cmd")
        in_place = self.cfg.unit_commands == "queue"

        async def unit(ctx):
            state, word, pc, delay, cycle = "idle", 0, 0, 0, 0
            ctx.set(cmd.ready, not in_place)
            async for _, _, valid, payload, grant, soft_reset in ctx.tick().sample(
                    cmd.valid, cmd.payload.as_value(), port.grant, dut.soft_reset):
                cycle += 1
                take = completing = False
                for flag in ("push_prev", "push_next", "error_valid"):
                    ctx.set(getattr(port, flag), 0)
                if soft_reset:
                    state = "idle"
                elif state == "idle" and valid:
                    word, pc = payload & ((1 << isa.INSTR_BITS) - 1), payload >> isa.INSTR_BITS
                    state = "request"
                elif state == "request" and grant:
                    state, delay = "busy", self.rng.randint(1, self.max_latency)
                    self.events.append((cycle, "grant", name, pc))
                    take = name == "exec"
                elif state == "busy":
                    delay -= 1
                    if delay == 0:
                        completing = True
                        fault = self.fault
                        if fault is not None and fault[:2] == (self.program, pc):
                            self.events.append((cycle, "fault", name, pc))
                            ctx.set(port.error_valid, 1)
                            ctx.set(port.error, {"cause": fault[2], "pc": pc,
                                                 "addr": fault[3]})
                        else:
                            _, fields = isa.decode(word)
                            ctx.set(port.push_prev, fields["push_prev"])
                            ctx.set(port.push_next, fields["push_next"])
                            ctx.set(port.push_pc, pc)
                            self.executed[name].append((self.program, pc))
                            self.events.append((cycle, "complete", name, pc))
                        state = "done"
                        take = name != "exec"
                elif state == "done":
                    state = "idle"
                _, fields = isa.decode(word) if state == "request" else (None, {})
                ctx.set(cmd.ready, take if in_place else state == "idle")
                ctx.set(port.request, state == "request")
                ctx.set(port.pop_prev, fields.get("pop_prev", 0))
                ctx.set(port.pop_next, fields.get("pop_next", 0))
                ctx.set(port.pc, pc)
                # (held in the cycle of the completion too, as UnitPort says)
                ctx.set(port.executing, state == "busy" or completing)
        return unit

    def _monitor(self):
        dut = self.dut
        signals = []
        for name in UNITS:
            port = getattr(dut, name)
            signals += [port.grant, port.pop_prev, port.pop_next, port.push_prev,
                        port.push_next, port.pc]

        async def monitor(ctx):
            tokens = dict.fromkeys(EDGES, 0)
            async for _, _, finished, *values in ctx.tick().sample(dut.finished, *signals):
                sampled = {name: dict(zip(("grant", "pop_prev", "pop_next", "push_prev",
                                           "push_next", "pc"), values[6 * i:6 * i + 6]))
                           for i, name in enumerate(UNITS)}
                for edge, (pusher, push, popper, pop) in EDGES.items():
                    if sampled[popper]["grant"] and sampled[popper][pop]:
                        if tokens[edge] == 0:
                            self.token_errors.append((edge, sampled[popper]["pc"]))
                        tokens[edge] -= 1
                        self.pops += 1
                for edge, (pusher, push, popper, pop) in EDGES.items():
                    if sampled[pusher][push]:
                        tokens[edge] += 1
                if finished:
                    tokens = dict.fromkeys(EDGES, 0)
        return monitor

    def _host(self):
        dut = self.dut

        async def host(ctx):
            for index, program in enumerate(self.programs):
                self.program = index
                ctx.set(dut.prog_count, len(program))
                ctx.set(dut.start, 1)
                cycle = 0
                # Sampled just before each edge: the other testbenches have set their outputs.
                async for _, _, finished in ctx.tick().sample(dut.finished):
                    if finished:
                        break
                    cycle += 1
                    assert cycle < self.cycles, f"program {index} did not finish"
                    assert ctx.get(dut.busy)
                    ctx.set(dut.abort, index == 0 and cycle == self.abort_at)
                    # A start while busy is ignored.
                    ctx.set(dut.start, cycle == 2)
                ctx.set(dut.start, 0)
                ctx.set(dut.abort, 0)
                self.outcomes.append((ctx.get(dut.done), ctx.get(dut.error),
                                      ErrorCause(ctx.get(dut.err_cause)), ctx.get(dut.err_pc),
                                      ctx.get(dut.err_addr)))
                assert not ctx.get(dut.busy)
        return host

    def run(self):
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        sim.add_testbench(self._host())
        sim.add_testbench(self._fetch(), background=True)
        sim.add_testbench(self._monitor(), background=True)
        for name in UNITS:
            sim.add_testbench(self._unit(name), background=True)
        sim.run()
        assert not self.token_errors, f"granted without a token: {self.token_errors[:5]}"
        return self


def _random_program(rng, length):
    """A legal program whose every pop is covered by pushes of earlier instructions, so it
    cannot deadlock whatever the latencies are."""
    words, credit = [], dict.fromkeys(EDGES, 0)
    pops = {(popper, flag): edge for edge, (_, _, popper, flag) in EDGES.items()}
    pushes = {(pusher, flag): edge for edge, (pusher, flag, _, _) in EDGES.items()}
    preload_pending = False
    while len(words) < length:
        unit = rng.choice(UNITS + ("control",))
        if unit == "control":
            words.append(isa.encode("FENCE"))
            continue
        flags = {}
        for flag in FLAGS[unit]:
            edge = pops.get((unit, flag)) or pushes[(unit, flag)]
            if flag.startswith("pop") and credit[edge] and rng.random() < 0.6:
                flags[flag] = 1
                credit[edge] -= 1
            elif flag.startswith("push") and rng.random() < 0.4:
                flags[flag] = 1
                credit[edge] += 1
        if unit == "load":
            words.append(load(**flags))
        elif unit == "store":
            words.append(store(**flags) if rng.random() < 0.7 else isa.encode(
                "CONFIG", clamp_lo=-1, clamp_hi=1, **flags))
        else:
            words.append(matmul(**flags) if preload_pending else preload(**flags))
            preload_pending = not preload_pending
    return words + [isa.encode("HALT")]


@every_config
@pytest.mark.parametrize("latency", [1, 6])
def test_random_programs_respect_tokens_and_order(latency, cfg):
    seed = _seed()
    rng = random.Random(seed)
    programs = [_random_program(rng, 60) for _ in range(3)]
    bench = Bench(programs, seed, max_latency=latency, cfg=cfg).run()
    assert [o[:2] for o in bench.outcomes] == [(1, 0)] * len(programs)
    assert bench.pops > 20, "the programs must exercise the tokens"
    for name in UNITS:
        expected = [(p, pc) for p, program in enumerate(programs)
                    for pc, word in enumerate(program) if _unit_of(word) == name]
        assert bench.executed[name] == expected, name


@every_config
def test_fence_waits_for_every_unit(cfg):
    # A slow load, FENCE, then a store and a load: neither may start before the load ends.
    program = [load(), isa.encode("FENCE"), store(), load(), isa.encode("HALT")]
    bench = Bench([program], _seed(), max_latency=20, cfg=cfg).run()
    assert bench.outcomes == [(1, 0, ErrorCause.NONE, 0, 0)]
    events = {(kind, pc): cycle for cycle, kind, _, pc in bench.events}
    assert events[("grant", 2)] > events[("complete", 0)]
    assert events[("grant", 3)] > events[("complete", 0)]


@every_config
@pytest.mark.parametrize("order", ["exec_first", "store_first", "load_first"])
def test_deadlock_reports_the_oldest_waiting_instruction(cfg, order):
    program = {
        "exec_first": [load(push_next=1),          # 0: l2e = 1
                       preload(pop_prev=1),        # 1: takes it
                       matmul(pop_prev=1),         # 2: waits forever
                       store(pop_prev=1)],         # 3: waits forever (e2s)
        "store_first": [load(),
                        store(pop_prev=1),         # 1: waits forever (e2s)
                        preload(pop_next=1)],      # 2: waits forever (s2e)
        "load_first": [load(pop_next=1),           # 0: waits forever (e2l)
                       store(pop_prev=1),          # 1: waits forever
                       preload(pop_prev=1)],       # 2: waits forever (l2e)
    }[order] + [isa.encode("HALT")]
    oldest = {"exec_first": 2, "store_first": 1, "load_first": 0}[order]
    good = [load(push_next=1), preload(pop_prev=1), matmul(), isa.encode("HALT")]
    bench = Bench([program, good], _seed(), cfg=cfg).run()
    assert bench.outcomes[0] == (0, 1, ErrorCause.TOKEN_DEADLOCK, oldest, 0)
    # Counters and queues are clean for the next program.
    assert bench.outcomes[1] == (1, 0, ErrorCause.NONE, 0, 0)


@every_config
def test_no_deadlock_while_a_queue_is_full_behind_a_slow_token(cfg):
    # Many exec instructions wait for a store token that a slow store gives late; the
    # dispatcher is blocked on the full exec queue meanwhile, which is not a deadlock.
    program = [store(push_prev=1)]
    for _ in range(QUEUE_DEPTH + 4):
        program += [preload(pop_next=1), matmul(push_next=1), store(pop_prev=1, push_prev=1)]
    program += [isa.encode("HALT")]
    bench = Bench([program], _seed(), max_latency=30, cfg=cfg).run()
    assert bench.outcomes == [(1, 0, ErrorCause.NONE, 0, 0)]


@every_config
def test_token_overflow(cfg):
    program = [load(push_next=1)] * (TOKEN_MAX + 1) + [isa.encode("HALT")]
    bench = Bench([program], _seed(), max_latency=1, cfg=cfg).run()
    assert bench.outcomes == [(0, 1, ErrorCause.TOKEN_OVERFLOW, TOKEN_MAX, 0)]


@pytest.mark.parametrize("case", ["illegal", "pairing", "double_preload", "past_count",
                                  "fetch_fault", "unit_fault"])
@every_config
def test_errors_stop_the_machine_with_cause_and_pc(case, cfg):
    halt = isa.encode("HALT")
    base = [load(), preload(), matmul(), store()]
    fault = None
    if case == "illegal":
        program = base + [isa.encode("PRELOAD", k_rows=CFG.rows + 1), halt]
        expected = (ErrorCause.ILLEGAL_INSTRUCTION, 4, 0)
    elif case == "pairing":
        program = base + [matmul(), halt]
        expected = (ErrorCause.ILLEGAL_INSTRUCTION, 4, 0)
    elif case == "double_preload":
        program = base + [preload(), preload(), halt]
        expected = (ErrorCause.ILLEGAL_INSTRUCTION, 5, 0)
    elif case == "past_count":
        program = base
        expected = (ErrorCause.ILLEGAL_INSTRUCTION, 4, 0)
    elif case == "fetch_fault":
        program = base + [(ErrorCause.DMA_WINDOW, 0x1234), halt]
        expected = (ErrorCause.DMA_WINDOW, 4, 0x1234)
    else:
        program = base + [store(), halt]
        fault = (0, 4, ErrorCause.DMA_SLVERR, 0x880)
        expected = (ErrorCause.DMA_SLVERR, 4, 0x880)
    good = [load(), preload(), matmul(), store(), halt]
    bench = Bench([program, good], _seed(), fault=fault, cfg=cfg).run()
    assert bench.outcomes[0] == (0, 1) + expected
    assert bench.outcomes[1] == (1, 0, ErrorCause.NONE, 0, 0)
    # Nothing after the faulting instruction ran.
    assert all(pc <= expected[1] for name in UNITS for p, pc in bench.executed[name] if p == 0)


@every_config
def test_nothing_is_granted_after_a_unit_fault(cfg):
    # A unit fault in the middle of random programs: the machine stops with it, and no unit
    # is granted an instruction after the cycle of the fault (with
    # unit_reports="registered", none while the fault waits in its register either).
    seed = _seed()
    rng = random.Random(seed)
    for _ in range(12):
        program = _random_program(rng, 40)
        pc = rng.choice([pc for pc, word in enumerate(program[10:30], 10) if _unit_of(word)])
        fault = (0, pc, ErrorCause.DMA_SLVERR, 0x40)
        bench = Bench([program], rng.randrange(1 << 30), fault=fault, max_latency=3,
                      cfg=cfg).run()
        assert bench.outcomes == [(0, 1, ErrorCause.DMA_SLVERR, pc, 0x40)]
        (fault_cycle,) = [cycle for cycle, kind, _, _ in bench.events if kind == "fault"]
        grants = [cycle for cycle, kind, _, _ in bench.events if kind == "grant"]
        # A grant is sampled at the edge after the cycle it was given in: fault_cycle + 1 is
        # a grant in the fault's own cycle.
        assert max(grants) <= fault_cycle + 1, (pc, bench.events[-8:])


@every_config
def test_a_fetch_fault_after_halt_is_not_an_error(cfg):
    program = [load(), isa.encode("HALT"), (ErrorCause.DMA_WINDOW, 0x40)]
    bench = Bench([program], _seed(), cfg=cfg).run()
    assert bench.outcomes == [(1, 0, ErrorCause.NONE, 0, 0)]


@every_config
def test_abort_stops_a_running_program_and_the_next_one_runs(cfg):
    program = [load(), preload(), matmul(), store()] * 20 + [isa.encode("HALT")]
    bench = Bench([program, program], _seed(), abort_at=30, max_latency=5, cfg=cfg).run()
    done, error, cause, _, _ = bench.outcomes[0]
    assert (done, error, cause) == (0, 1, ErrorCause.ABORTED)
    assert len(bench.executed["load"]) < 20 + 20
    assert bench.outcomes[1] == (1, 0, ErrorCause.NONE, 0, 0)
