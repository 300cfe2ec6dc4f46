"""The controller: dispatch in program order, dependency tokens, done / error / abort."""

from itertools import combinations

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from sw import isa
from sw.isa import ErrorCause, Opcode, Queue

from .burst import dma_cmd_layout
from .config import Config
from .decoder import Decoder, legal_bits
from .fetch import fetched_layout
from .load_unit import dma_field_mask
from .queues import CommandPacking, UnitPort, command_layout, pc_width


__all__ = ["Controller", "QUEUE_DEPTH", "DEADLOCK_CYCLES"]

# Instructions waiting in each of the load / exec / store queues, unless the Config says
# otherwise (``cfg.queue_depth``; sim/fuzz.py restates this default).
QUEUE_DEPTH = Config().queue_depth
DEADLOCK_CYCLES = 8    # how long "nothing can move" must last to be a deadlock
TOKEN_WIDTH = 8
_QUEUE_IDS = {"load": Queue.LOAD, "exec": Queue.EXEC, "store": Queue.STORE}
_UNITS = tuple(_QUEUE_IDS)


class _RegisteredReports:
    """A unit's :class:`~hw.queues.UnitPort` as the controller sees it with
    ``cfg.unit_reports == "registered"``: requests and grants pass straight through; the
    completion (``push_*``) and the fault (``error*``) arrive a cycle late, from registers,
    and the unit counts as ``executing`` until they have. What a unit reports as the datapath
    is cleared (``soft_reset``, a forced stop) is dropped."""

    def __init__(self, m, name, port, soft_reset):
        self.request, self.pop_prev, self.pop_next, self.pc = (
            port.request, port.pop_prev, port.pop_next, port.pc)
        self.grant, self.stop = port.grant, port.stop
        self.push_prev = Signal(name=f"{name}_push_prev_q")
        self.push_next = Signal(name=f"{name}_push_next_q")
        self.push_pc = Signal.like(port.push_pc, name=f"{name}_push_pc_q")
        self.error_valid = Signal(name=f"{name}_error_valid_q")
        self.error = Signal.like(port.error, name=f"{name}_error_q")
        self.executing = Signal(name=f"{name}_executing")
        m.d.sync += [self.push_prev.eq(port.push_prev & ~soft_reset),
                     self.push_next.eq(port.push_next & ~soft_reset),
                     self.error_valid.eq(port.error_valid & ~soft_reset),
                     self.push_pc.eq(port.push_pc), self.error.eq(port.error)]
        # A unit holds `executing` (or `request`, for a CONFIG) in the cycle it reports.
        m.d.comb += self.executing.eq(port.executing | self.push_prev | self.push_next
                                      | self.error_valid)


class Controller(wiring.Component):
    """Dispatches fetched instructions to the three unit queues and runs the machine's states.

    ``start`` (ignored while busy) begins a program: the fetcher is started, the token
    counters cleared. Each fetched word is decoded; an illegal word, a PRELOAD/MATMUL pairing
    violation, a fetch fault or running past ``count`` stops the machine with that pc.
    FENCE and HALT wait until every queue is empty and every unit idle. The four token
    counters (load->exec, exec->load, exec->store, store->exec) grant a unit's pops when they
    are nonzero; a push onto a full counter is TOKEN_OVERFLOW. When every unit is idle or
    waiting for a token, at least one is waiting, and the dispatcher cannot move, for
    :data:`DEADLOCK_CYCLES` cycles, the machine stops with TOKEN_DEADLOCK at the oldest waiting
    instruction. ``abort`` stops it with ABORTED.

    With ``cfg.unit_reports == "registered"`` the units' completions and faults are taken a
    cycle after the unit reports them (:class:`_RegisteredReports`); while a fault waits
    there, nothing is granted or dispatched.

    Each unit queue holds ``cfg.queue_depth`` instructions; dispatch waits while the target
    queue is full. A queue stores only the word bits a legal instruction of its unit can have
    set (:func:`~hw.decoder.legal_bits`; the decoder guarantees the others) and, for LOAD,
    that the DMA takes.

    Stopping (done or error): nothing more is dispatched or granted; the units finish the
    instruction they execute (so every bus transfer completes), then ``soft_reset`` pulses for
    one cycle to clear the datapath for the next program, and ``done`` / ``error`` are set.

    Ports
      start, abort, prog_base, prog_count   from the registers; ``prog_count`` is PROG_COUNT
                     as the register holds it, saturated to :func:`~hw.queues.pc_width` bits
                     (WARL), as are all pcs here.
      fetch_start, fetch_flush, fetch_busy, words   to/from the :class:`~hw.fetch.Fetcher`;
                     ``words`` come in program order from pc 0 after ``fetch_start`` (the
                     dispatcher counts them: its pc is the head's).
      load_cmd, exec_cmd, store_cmd   Out(stream{word, pc}) the unit queues.
      load, exec, store   In(UnitPort) the units.
      busy, done, error, err_cause, err_pc, err_addr, pc   status (done/error sticky until start).
      finished   Out(1): one-cycle pulse when a program ends (done or error), for the IRQ.
      soft_reset Out(1).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        pcw = pc_width(cfg)
        super().__init__({
            "start": In(1),
            "abort": In(1),
            "prog_base": In(cfg.addr_width),
            "prog_count": In(pcw),
            "fetch_start": Out(1),
            "fetch_flush": Out(1),
            "fetch_busy": In(1),
            "words": In(stream.Signature(fetched_layout(cfg))),
            "load_cmd": Out(stream.Signature(command_layout(cfg))),
            "exec_cmd": Out(stream.Signature(command_layout(cfg))),
            "store_cmd": Out(stream.Signature(command_layout(cfg))),
            "load": In(UnitPort(cfg)),
            "exec": In(UnitPort(cfg)),
            "store": In(UnitPort(cfg)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "err_cause": Out(ErrorCause),
            "err_pc": Out(pcw),
            "err_addr": Out(cfg.addr_width),
            "pc": Out(pcw),
            "watchdog_expired": In(1),
            "finished": Out(1),
            "failed": Out(1),
            "soft_reset": Out(1),
            "bus_reset": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        pcw = pc_width(cfg)
        units = {"load": self.load, "exec": self.exec, "store": self.store}
        fault_waiting = Signal()
        if cfg.unit_reports == "registered":
            units = {name: _RegisteredReports(m, name, port, self.soft_reset)
                     for name, port in units.items()}
            m.d.comb += fault_waiting.eq(units["load"].error_valid | units["exec"].error_valid
                                         | units["store"].error_valid)
        cmds = {"load": self.load_cmd, "exec": self.exec_cmd, "store": self.store_cmd}

        head = self.words.payload
        # The dispatcher's pc: the fetcher delivers words in program order from the same
        # start, so it is the head's index.
        pc = Signal(pcw)
        dispatched = Signal(command_layout(cfg))
        m.d.comb += [dispatched.word.eq(head.word), dispatched.pc.eq(pc)]
        queues = {}
        for name, queue_id in _QUEUE_IDS.items():
            # Only the bits a legal instruction of the queue can have set are stored, and of
            # a LOAD's DRAM address and stride only those the DMA takes (the STORE queue's
            # dram_addr bits are CONFIG's clamp_hi too: all of them are kept).
            mask, ones = legal_bits(cfg, queue_id)
            if queue_id == Queue.LOAD:
                mask &= dma_field_mask("LOAD", Signal(dma_cmd_layout(cfg)))
            packing = CommandPacking(mask, ones, pcw)
            queues[name] = q = fifo.SyncFIFO(width=packing.width, depth=cfg.queue_depth)
            m.submodules[f"{name}_queue"] = ResetInserter(self.soft_reset)(q)
            m.d.comb += [q.w_data.eq(packing.pack(dispatched)),
                         cmds[name].payload.eq(packing.unpack(q.r_data)),
                         cmds[name].valid.eq(q.r_rdy), q.r_en.eq(cmds[name].ready)]

        running = Signal()
        stopping = Signal()
        m.d.comb += self.busy.eq(running | stopping)

        # ---- first error wins --------------------------------------------------------------
        raise_error = Signal()
        cause = Signal(ErrorCause)
        err_addr = Signal(cfg.addr_width)

        # ---- tokens --------------------------------------------------------------------------
        # counter name: (pushing unit, its flag, popping unit, its flag)
        edges = {
            "l2e": ("load", "push_next", "exec", "pop_prev"),
            "e2l": ("exec", "push_prev", "load", "pop_next"),
            "e2s": ("exec", "push_next", "store", "pop_prev"),
            "s2e": ("store", "push_prev", "exec", "pop_next"),
        }
        counters = {name: Signal(TOKEN_WIDTH, name=f"tokens_{name}") for name in edges}
        available = {}
        for name, (_, _, popper, flag) in edges.items():
            available[(popper, flag)] = counters[name] != 0
        granted = {}
        for unit_name, unit in units.items():
            ok = unit.request & running & ~stopping & ~fault_waiting
            for flag in ("pop_prev", "pop_next"):
                if (unit_name, flag) in available:
                    ok &= ~getattr(unit, flag) | available[(unit_name, flag)]
            granted[unit_name] = Signal(name=f"grant_{unit_name}")
            m.d.comb += [granted[unit_name].eq(ok), unit.grant.eq(ok),
                         unit.stop.eq(stopping | ~running)]
        overflow_pc = Signal(pcw)
        overflow = Signal()
        for name, (pusher, push_flag, popper, pop_flag) in edges.items():
            push = getattr(units[pusher], push_flag)
            pop = granted[popper] & getattr(units[popper], pop_flag)
            counter = counters[name]
            with m.If(push & ~pop & (counter == isa.TOKEN_MAX)):
                m.d.comb += [overflow.eq(1), overflow_pc.eq(units[pusher].push_pc)]
            with m.Elif(push ^ pop):
                # One adder for both directions (-1 is all ones modulo the counter width).
                m.d.sync += counter.eq(counter + Mux(push, 1, (1 << TOKEN_WIDTH) - 1))

        # ---- dispatch --------------------------------------------------------------------------
        m.submodules.decoder = decoder = Decoder(cfg)
        m.d.comb += decoder.word.eq(head.word)
        count = Signal(pcw)
        preload_pending = Signal()
        m.d.comb += self.pc.eq(pc)

        all_idle = Signal()
        idle_terms = []
        for name in _UNITS:
            idle_terms.append((queues[name].level == 0) & ~cmds[name].valid
                              & ~units[name].request & ~units[name].executing)
        m.d.comb += all_idle.eq(idle_terms[0] & idle_terms[1] & idle_terms[2])

        dispatching = running & ~stopping & ~fault_waiting
        target_ready = Signal()
        with m.Switch(decoder.queue):
            for name, queue_id in _QUEUE_IDS.items():
                with m.Case(queue_id):
                    m.d.comb += target_ready.eq(queues[name].w_rdy)
            with m.Case(Queue.CONTROL):
                m.d.comb += target_ready.eq(all_idle)
        pairing_bad = ((decoder.is_preload & preload_pending)
                       | (decoder.is_ws_matmul & ~preload_pending))
        halted = Signal()
        dispatch_blocked = Signal()
        # A dispatcher error is at ``pc``, the head's index.
        with m.If(dispatching & (pc == count)):
            m.d.comb += [raise_error.eq(1), cause.eq(ErrorCause.ILLEGAL_INSTRUCTION)]
        with m.Elif(dispatching & self.words.valid):
            with m.If(head.fault):
                m.d.comb += [raise_error.eq(1), cause.eq(head.cause), err_addr.eq(head.addr)]
            with m.Elif(decoder.illegal | pairing_bad):
                m.d.comb += [raise_error.eq(1), cause.eq(ErrorCause.ILLEGAL_INSTRUCTION)]
            with m.Elif(target_ready):
                m.d.comb += self.words.ready.eq(1)
                m.d.sync += pc.eq(pc + 1)
                with m.If(decoder.is_preload):
                    m.d.sync += preload_pending.eq(1)
                with m.If(decoder.is_ws_matmul):
                    m.d.sync += preload_pending.eq(0)
                with m.Switch(decoder.queue):
                    with m.Case(Queue.LOAD):
                        m.d.comb += queues["load"].w_en.eq(1)
                    with m.Case(Queue.EXEC):
                        m.d.comb += queues["exec"].w_en.eq(1)
                    with m.Case(Queue.STORE):
                        m.d.comb += queues["store"].w_en.eq(1)
                    with m.Case(Queue.CONTROL):
                        with m.If(decoder.opcode == Opcode.HALT):
                            m.d.comb += halted.eq(1)
            with m.Else():
                m.d.comb += dispatch_blocked.eq(1)

        # ---- deadlock --------------------------------------------------------------------------
        waiting = {name: units[name].request & ~granted[name] for name in _UNITS}
        # A unit can wait for a token while earlier instructions of it still execute (the
        # exec unit overlaps PRELOAD and MATMUL): only a unit with nothing executing is quiet.
        quiet = {name: ~units[name].executing & (waiting[name] | (
                     (queues[name].level == 0) & ~cmds[name].valid & ~units[name].request))
                 for name in _UNITS}
        stuck = (dispatching & dispatch_blocked & (waiting["load"] | waiting["exec"]
                                                   | waiting["store"])
                 & quiet["load"] & quiet["exec"] & quiet["store"])
        stuck_cycles = Signal(range(DEADLOCK_CYCLES + 1))
        with m.If(stuck):
            m.d.sync += stuck_cycles.eq(stuck_cycles + 1)
        with m.Else():
            m.d.sync += stuck_cycles.eq(0)
        if cfg.queue_depth == 1 and cfg.unit_commands == "queue":
            # A unit's waiting instruction is its one-entry queue's entry (the unit runs it in
            # place), so the order the entries were dispatched in tells the oldest: a bit per
            # pair of queues instead of pc comparators.
            older = {}
            for a, b in combinations(_UNITS, 2):
                older[(a, b)] = bit = Signal(name=f"{a}_older_than_{b}")
                older[(b, a)] = ~bit
                with m.If(queues[a].w_en):
                    m.d.sync += bit.eq(0)
                with m.If(queues[b].w_en):
                    m.d.sync += bit.eq(1)
            oldest = 0
            for name in _UNITS:
                first = waiting[name]
                for other in _UNITS:
                    if other != name:
                        first &= ~waiting[other] | older[(name, other)]
                oldest |= Mux(first, units[name].pc, 0)
        else:
            oldest = (1 << pcw) - 1
            for name in _UNITS:
                candidate = Signal(pcw, name=f"oldest_after_{name}")
                m.d.comb += candidate.eq(Mux(waiting[name] & (units[name].pc < oldest),
                                             units[name].pc, oldest))
                oldest = candidate
        deadlock = stuck_cycles == DEADLOCK_CYCLES

        # ---- unit faults, overflow, deadlock, abort: the earliest-priority one is kept --------
        unit_fault = Signal()
        for name in reversed(_UNITS):
            unit = units[name]
            with m.If(unit.error_valid):
                m.d.comb += unit_fault.eq(1)
        first = Signal()
        with m.If(running & ~stopping):
            with m.If(self.watchdog_expired):
                m.d.comb += first.eq(1)
                m.d.sync += [self.err_cause.eq(ErrorCause.WATCHDOG), self.err_pc.eq(pc),
                             self.err_addr.eq(0)]
            with m.Elif(self.abort):
                m.d.comb += [first.eq(1)]
                m.d.sync += [self.err_cause.eq(ErrorCause.ABORTED), self.err_pc.eq(pc),
                             self.err_addr.eq(0)]
            with m.Elif(unit_fault):
                m.d.comb += first.eq(1)
                for name in reversed(_UNITS):
                    unit = units[name]
                    with m.If(unit.error_valid):
                        m.d.sync += [self.err_cause.eq(unit.error.cause),
                                     self.err_pc.eq(unit.error.pc),
                                     self.err_addr.eq(unit.error.addr)]
            with m.Elif(overflow):
                m.d.comb += first.eq(1)
                m.d.sync += [self.err_cause.eq(ErrorCause.TOKEN_OVERFLOW),
                             self.err_pc.eq(overflow_pc), self.err_addr.eq(0)]
            with m.Elif(deadlock):
                m.d.comb += first.eq(1)
                m.d.sync += [self.err_cause.eq(ErrorCause.TOKEN_DEADLOCK),
                             self.err_pc.eq(oldest), self.err_addr.eq(0)]
            with m.Elif(raise_error):
                m.d.comb += first.eq(1)
                m.d.sync += [self.err_cause.eq(cause), self.err_pc.eq(pc),
                             self.err_addr.eq(err_addr)]
        failed = self.failed
        # An error in the cycle HALT is dispatched still makes the program fail.
        with m.If(first):
            m.d.sync += [stopping.eq(1), failed.eq(1)]
        with m.Elif(halted):
            m.d.sync += [stopping.eq(1), failed.eq(0)]
        m.d.comb += self.fetch_flush.eq(stopping)

        # ---- drain, then clear the datapath -------------------------------------------------
        executing = (units["load"].executing | units["exec"].executing
                     | units["store"].executing)
        # A drain that the watchdog sees stuck too (a dead bus) is cut short: the DMA is reset.
        forced = stopping & self.watchdog_expired & failed
        m.d.comb += self.bus_reset.eq(forced)
        with m.If(stopping & (~executing & ~self.fetch_busy | forced)):
            m.d.comb += [self.soft_reset.eq(1), self.finished.eq(1)]
            m.d.sync += [stopping.eq(0), running.eq(0), self.done.eq(~failed),
                         self.error.eq(failed)]
            for counter in counters.values():
                m.d.sync += counter.eq(0)

        with m.If(self.start & ~self.busy):
            m.d.comb += self.fetch_start.eq(1)
            m.d.sync += [running.eq(1), pc.eq(0), count.eq(self.prog_count),
                         preload_pending.eq(0), self.done.eq(0), self.error.eq(0),
                         self.err_cause.eq(ErrorCause.NONE), self.err_pc.eq(0),
                         self.err_addr.eq(0), failed.eq(0)]
            for counter in counters.values():
                m.d.sync += counter.eq(0)
        return m
