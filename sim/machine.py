"""The golden model of the whole machine: executes an instruction stream on numpy state.

This is the executable form of docs/DESIGN.md "Instruction semantics"; every piece of
arithmetic comes from :mod:`sim.golden`. State: scratchpad (``sp_rows x E`` int8),
accumulator (``acc_rows x C``, wrapping at ``acc_width``), quantisation parameters
(``6 x C`` int32), the output-pipeline configuration, four dependency-token counters and a
DRAM (a bytearray mapped at ``dram_base``).

Execution model (what the hardware must match):

- The dispatcher fetches instruction ``pc`` from ``prog_base + 16*pc`` (a fetch outside the
  DMA window is ``DMA_WINDOW`` with that pc and the fetch address), checks it and appends it
  to its queue. Queues are ``queue_depth`` deep (``None``: unbounded); FENCE and HALT stall
  the dispatcher until every queue is empty. Fetching index ``prog_count`` (running off the
  end of the program without HALT) is ``ILLEGAL_INSTRUCTION`` with ``pc = prog_count``.
- Every check of DESIGN.md's illegal list is made at dispatch, in program order (the
  PRELOAD/MATMUL pairing is tracked there too, since the exec queue runs in program order).
- The queues run round-robin (load, exec, store); a queue runs its head instruction when all
  its token pops are satisfiable: pop, execute, push. A push onto a counter already at
  ``TOKEN_MAX`` is ``TOKEN_OVERFLOW`` (the instruction itself has happened).
- When neither the dispatcher nor any queue can move, the machine stops with
  ``TOKEN_DEADLOCK`` at the oldest (lowest index) instruction waiting for a token.
- The first error stops the machine at once: nothing else executes. Only the faulting
  instruction's own partial effect is specified (a DMA transfer performs the rows before the
  first bad one); which other dispatched instructions ran before the stop depends on timing,
  so hardware comparisons should compare DRAM after an error only for that instruction.
- DMA rows (``row_elems * element_bytes`` bytes at ``dram_addr + r*stride``) are checked
  against the window ``[base, base + size)`` in order (row addresses are computed modulo
  ``2**addr_width``, so a stride of ``-s`` mod 2**32 walks backwards); a row inside the window but outside the
  modelled DRAM array is ``DMA_DECERR`` (nothing answers there), with the row address.
- Before any CONFIG the output pipeline is: multiplier 0, shift 0, zero point 0, clamp to the
  full ``output_width`` range, per-tensor, no bias. Per-column shift values use their low 5
  bits (the width of CONFIG.shift). LOAD into the accumulator wraps values to ``acc_width``;
  STORE reads accumulator values sign-extended to 32 bits.

Counters: ``instructions`` (retired, FENCE/HALT included), ``macs`` (array MAC slots issued:
``R*C`` per WS row, ``R*C`` per OS reduction step), ``dma_bytes_read`` / ``dma_bytes_written``
(LOAD / STORE payload bytes) and ``fetch_bytes`` (instruction fetches).
"""

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sim import golden
from sw import isa
from sw.isa import ErrorCause, LoadDst, Opcode, Queue


__all__ = ["Machine", "MachineError", "MachineResult", "run_program"]

_ACC_BYTES = 4                                   # accumulator / qparam elements in DRAM
_QPARAM_ROWS = isa.QPARAM_SLOTS * len(isa.QPARAM_KINDS)
_TOKEN_EDGES = ((Queue.LOAD, Queue.EXEC), (Queue.EXEC, Queue.LOAD),
                (Queue.EXEC, Queue.STORE), (Queue.STORE, Queue.EXEC))
_NEIGHBOURS = {Queue.LOAD: (None, Queue.EXEC), Queue.EXEC: (Queue.LOAD, Queue.STORE),
               Queue.STORE: (Queue.EXEC, None)}
_RUN_ORDER = (Queue.LOAD, Queue.EXEC, Queue.STORE)
_SHIFT_MASK = isa.INSTRUCTIONS["CONFIG"].field("shift").max


class MachineError(Exception):
    """The machine stopped: ``cause`` (:class:`~sw.isa.ErrorCause`), ``pc``, ``addr``."""

    def __init__(self, cause, pc, addr=0, detail=""):
        self.cause = ErrorCause(cause)
        self.pc = pc
        self.addr = addr
        self.detail = detail
        text = f"{self.cause.name} at instruction {pc}"
        if self.cause in (ErrorCause.DMA_WINDOW, ErrorCause.DMA_DECERR, ErrorCause.DMA_SLVERR):
            text += f" (address {addr:#x})"
        super().__init__(text + (f": {detail}" if detail else ""))

    def as_tuple(self):
        return int(self.cause), self.pc, self.addr


@dataclass
class MachineResult:
    dram: bytes
    error: MachineError | None
    counters: dict = field(default_factory=dict)


@dataclass
class _Issued:
    pc: int
    instr: isa.Instruction
    f: dict


def _illegal(pc, why):
    return MachineError(ErrorCause.ILLEGAL_INSTRUCTION, pc, detail=why)


class Machine:
    """Executes programs held in ``dram`` (bytes mapped at ``dram_base``).

    ``window=(base, size)`` is the DMA window (default: the Config's reset value).
    """

    def __init__(self, cfg, dram, dram_base=0, window=None, queue_depth=None):
        if queue_depth is not None and queue_depth < 1:
            raise ValueError(f"queue_depth={queue_depth} must be None or at least 1")
        self.cfg = cfg
        self.dram = bytearray(dram)
        self.dram_base = dram_base
        self.window = window if window is not None else (cfg.dram_base, cfg.dram_size)
        self.queue_depth = queue_depth
        R, C, E = cfg.rows, cfg.cols, cfg.sp_row_elems
        self.sp = np.zeros((cfg.sp_rows, E), dtype=np.int8)
        self.acc = np.zeros((cfg.acc_rows, C), dtype=np.int64)
        self.qparam = np.zeros((_QPARAM_ROWS, C), dtype=np.int64)
        self.weights = None
        out_lo, out_hi = -(1 << (cfg.output_width - 1)), (1 << (cfg.output_width - 1)) - 1
        self.pipeline = dict(multiplier=0, shift=0, zero_point=0, clamp_lo=out_lo,
                             clamp_hi=out_hi, per_column=0, bias_en=0)
        self.tokens = {edge: 0 for edge in _TOKEN_EDGES}
        self.counters = dict(instructions=0, macs=0, dma_bytes_read=0, dma_bytes_written=0,
                             fetch_bytes=0)
        self._R, self._C, self._E = R, C, E
        self._addr_mask = (1 << cfg.addr_width) - 1

    # -- running ---------------------------------------------------------------------------

    def run(self, prog_base, prog_count):
        """Run the program; returns a :class:`MachineResult` (never raises MachineError)."""
        try:
            self._run(prog_base, prog_count)
            error = None
        except MachineError as e:
            error = e
        return MachineResult(bytes(self.dram), error, dict(self.counters))

    def _run(self, prog_base, prog_count):
        queues = {q: deque() for q in _RUN_ORDER}
        self._preload_pending = False
        pc, fetched = 0, None
        while True:
            progress = False
            while True:
                if fetched is None:
                    if pc >= prog_count:
                        raise _illegal(pc, "ran past the end of the program without HALT")
                    fetched = self._check(pc, self._fetch(prog_base, pc))
                instr, f = fetched
                if instr.queue == Queue.CONTROL:
                    if any(queues.values()):
                        break
                    self.counters["instructions"] += 1
                    if instr.opcode == Opcode.HALT:
                        return
                else:
                    queue = queues[instr.queue]
                    if self.queue_depth is not None and len(queue) >= self.queue_depth:
                        break
                    queue.append(_Issued(pc, instr, f))
                progress = True
                pc, fetched = pc + 1, None
            blocked = []
            for q in _RUN_ORDER:
                if not queues[q]:
                    continue
                head = queues[q][0]
                if self._can_pop(q, head.f):
                    queues[q].popleft()
                    self._execute(q, head)
                    progress = True
                else:
                    blocked.append(head.pc)
            if not progress:
                # The dispatcher only stalls on FENCE/HALT or a full queue, so a queue is
                # non-empty here and all of them wait for tokens.
                raise MachineError(ErrorCause.TOKEN_DEADLOCK, min(blocked),
                                   detail="every queue waits for a token")

    def _fetch(self, prog_base, pc):
        addr = prog_base + pc * isa.INSTR_BYTES
        data = self._dram_read(pc, addr, isa.INSTR_BYTES)
        self.counters["fetch_bytes"] += isa.INSTR_BYTES
        return int.from_bytes(data, "little")

    # -- tokens ----------------------------------------------------------------------------

    def _can_pop(self, q, f):
        prev, nxt = _NEIGHBOURS[q]
        return ((not f["pop_prev"] or self.tokens[(prev, q)] > 0)
                and (not f["pop_next"] or self.tokens[(nxt, q)] > 0))

    def _execute(self, q, issued):
        prev, nxt = _NEIGHBOURS[q]
        f = issued.f
        if f["pop_prev"]:
            self.tokens[(prev, q)] -= 1
        if f["pop_next"]:
            self.tokens[(nxt, q)] -= 1
        getattr(self, "_do_" + issued.instr.name.lower())(issued.pc, f)
        self.counters["instructions"] += 1
        for flag, other in (("push_prev", prev), ("push_next", nxt)):
            if f[flag]:
                if self.tokens[(q, other)] >= isa.TOKEN_MAX:
                    raise MachineError(ErrorCause.TOKEN_OVERFLOW, issued.pc,
                                       detail=f"{q.name} -> {other.name} counter is full")
                self.tokens[(q, other)] += 1

    # -- static checks ---------------------------------------------------------------------

    def _check(self, pc, word):
        cfg = self.cfg
        try:
            instr, f = isa.decode(word)
        except isa.IllegalInstruction as e:
            raise _illegal(pc, str(e)) from None
        flags = ("pop_prev", "pop_next", "push_prev", "push_next")
        if instr.queue == Queue.CONTROL:
            if any(f[k] for k in flags):
                raise _illegal(pc, f"{instr.name} takes no token flags")
            return instr, f
        prev, nxt = _NEIGHBOURS[instr.queue]
        if prev is None and (f["pop_prev"] or f["push_prev"]):
            raise _illegal(pc, f"the {instr.queue.name} queue has no previous queue")
        if nxt is None and (f["pop_next"] or f["push_next"]):
            raise _illegal(pc, f"the {instr.queue.name} queue has no next queue")
        getattr(self, "_check_" + instr.name.lower())(pc, f)
        return instr, f

    def _require(self, pc, ok, why):
        if not ok:
            raise _illegal(pc, why)

    def _check_load(self, pc, f):
        self._require(pc, f["dst"] in tuple(LoadDst), f"LOAD dst={f['dst']} is not defined")
        self._require(pc, f["rows"] >= 1 and f["row_elems"] >= 1, "rows and row_elems >= 1")
        dst = LoadDst(f["dst"])
        width = self._E if dst == LoadDst.SP else self._C
        depth = {LoadDst.SP: self.cfg.sp_rows, LoadDst.ACC: self.cfg.acc_rows,
                 LoadDst.QPARAM: _QPARAM_ROWS}[dst]
        self._require(pc, f["row_elems"] <= width, f"row_elems {f['row_elems']} > {width}")
        self._require(pc, f["local_addr"] + f["rows"] <= depth, f"{dst.name} range past row {depth - 1}")

    def _check_store(self, pc, f):
        self._require(pc, f["rows"] >= 1 and f["row_elems"] >= 1, "rows and row_elems >= 1")
        self._require(pc, f["row_elems"] <= self._C, f"row_elems {f['row_elems']} > {self._C}")
        self._require(pc, f["acc_addr"] + f["rows"] <= self.cfg.acc_rows, "ACC range past the end")

    def _check_config(self, pc, f):
        width = self.cfg.output_width
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        self._require(pc, f["clamp_lo"] <= f["clamp_hi"], "clamp_lo > clamp_hi")
        self._require(pc, lo <= f["clamp_lo"] and f["clamp_hi"] <= hi,
                      f"clamps outside the {width}-bit output range")

    def _check_preload(self, pc, f):
        self._require(pc, self.cfg.has_ws, "PRELOAD needs the weight-stationary dataflow")
        self._require(pc, 1 <= f["k_rows"] <= self._R, f"k_rows must be 1..{self._R}")
        self._require(pc, f["sp_addr"] + f["k_rows"] <= self.cfg.sp_rows, "SP range past the end")
        self._require(pc, not self._preload_pending, "a PRELOAD is already pending")
        self._preload_pending = True

    def _check_matmul(self, pc, f):
        cfg = self.cfg
        self._require(pc, f["count"] >= 1, "count must be >= 1")
        self._require(pc, f["a_addr"] + f["count"] <= cfg.sp_rows, "a_addr range past the end")
        if f["dataflow"] == isa.Dataflow.WS:
            self._require(pc, cfg.has_ws, "the weight-stationary dataflow is not built")
            self._require(pc, f["acc_addr"] + f["count"] <= cfg.acc_rows, "ACC range past the end")
            self._require(pc, self._preload_pending, "WS MATMUL without a PRELOAD")
            self._preload_pending = False
        else:
            self._require(pc, cfg.has_os, "the output-stationary dataflow is not built")
            self._require(pc, f["b_addr"] + f["count"] <= cfg.sp_rows, "b_addr range past the end")
            self._require(pc, f["acc_addr"] + self._R <= cfg.acc_rows, "ACC range past the end")

    # -- DRAM ------------------------------------------------------------------------------

    def _row_fault(self, addr, nbytes):
        """The error cause for a transfer of ``nbytes`` at ``addr``, or None if it is fine."""
        base, size = self.window
        if addr < base or addr + nbytes > base + size:
            return ErrorCause.DMA_WINDOW
        if addr < self.dram_base or addr + nbytes > self.dram_base + len(self.dram):
            return ErrorCause.DMA_DECERR
        return None

    def _dram_read(self, pc, addr, nbytes):
        cause = self._row_fault(addr, nbytes)
        if cause is not None:
            raise MachineError(cause, pc, addr)
        offset = addr - self.dram_base
        return bytes(self.dram[offset:offset + nbytes])

    def _rows(self, pc, f, elem_bytes, transfer):
        """Call ``transfer(r, offset, nbytes)`` for each DMA row until the first bad one."""
        nbytes = f["row_elems"] * elem_bytes
        for r in range(f["rows"]):
            addr = (f["dram_addr"] + r * f["dram_stride"]) & self._addr_mask
            cause = self._row_fault(addr, nbytes)
            if cause is not None:
                raise MachineError(cause, pc, addr)
            transfer(r, addr - self.dram_base, nbytes)

    # -- instructions ----------------------------------------------------------------------

    def _do_load(self, pc, f):
        dst = LoadDst(f["dst"])
        n, base = f["row_elems"], f["local_addr"]
        if dst == LoadDst.SP:
            def transfer(r, offset, nbytes):
                self.sp[base + r] = 0
                self.sp[base + r, :n] = np.frombuffer(self.dram, np.int8, n, offset)
            self._rows(pc, f, 1, transfer)
        else:
            target = self.acc if dst == LoadDst.ACC else self.qparam
            width = self.cfg.acc_width if dst == LoadDst.ACC else 32

            def transfer(r, offset, nbytes):
                target[base + r] = 0
                target[base + r, :n] = golden.wrap(np.frombuffer(self.dram, "<i4", n, offset), width)
            self._rows(pc, f, _ACC_BYTES, transfer)
        self.counters["dma_bytes_read"] += f["rows"] * n * (1 if dst == LoadDst.SP else _ACC_BYTES)

    def _store_values(self, rows, slot, out_int32):
        p = self.pipeline
        n = rows.shape[1]
        q = self.qparam[3 * slot:3 * slot + 3, :n]
        bias = q[0] if p["bias_en"] else None
        if p["per_column"]:
            multiplier, shift = q[1], q[2] & _SHIFT_MASK
        else:
            multiplier, shift = p["multiplier"], p["shift"]
        return golden.output_pipeline(
            rows, bias=bias, multiplier=multiplier, shift=shift, zero_point=p["zero_point"],
            lo=p["clamp_lo"], hi=p["clamp_hi"], output_width=self.cfg.output_width,
            out_int32=bool(out_int32))

    def _do_store(self, pc, f):
        rows = self.acc[f["acc_addr"]:f["acc_addr"] + f["rows"], :f["row_elems"]]
        values = self._store_values(rows, f["qslot"], f["out_int32"])
        dtype = "<i4" if f["out_int32"] else np.int8
        data = values.astype(dtype)

        def transfer(r, offset, nbytes):
            self.dram[offset:offset + nbytes] = data[r].tobytes()
        self._rows(pc, f, 4 if f["out_int32"] else 1, transfer)
        self.counters["dma_bytes_written"] += data.nbytes

    def _do_config(self, pc, f):
        for key in self.pipeline:
            self.pipeline[key] = f[key]

    def _do_preload(self, pc, f):
        w = np.zeros((self._R, self._C), dtype=np.int64)
        w[:f["k_rows"]] = self.sp[f["sp_addr"]:f["sp_addr"] + f["k_rows"], :self._C]
        self.weights = w

    def _do_matmul(self, pc, f):
        cfg = self.cfg
        R, C, count = self._R, self._C, f["count"]
        a = self.sp[f["a_addr"]:f["a_addr"] + count].astype(np.int64)
        if f["dataflow"] == isa.Dataflow.WS:
            product = golden.matmul(a[:, :R], self.weights, cfg.acc_width, cfg.input_width,
                                    cfg.weight_width)
            self.weights = None
            rows = count
        else:
            b = self.sp[f["b_addr"]:f["b_addr"] + count, :C].astype(np.int64)
            product = golden.matmul(a[:, :R].T, b, cfg.acc_width, cfg.input_width,
                                    cfg.weight_width)
            rows = R
        target = slice(f["acc_addr"], f["acc_addr"] + rows)
        if f["accumulate"]:
            product = golden.wrap(self.acc[target] + product, cfg.acc_width)
        self.acc[target] = product
        self.counters["macs"] += count * R * C


def run_program(cfg, words, dram=b"", *, prog_base=None, dram_base=0, window=None,
                queue_depth=None):
    """Test helper: place ``words`` in DRAM (after ``dram`` by default) and run them."""
    image = bytearray(dram)
    if prog_base is None:
        prog_base = dram_base + len(image)
    offset = prog_base - dram_base
    code = isa.to_bytes(words)
    if len(image) < offset + len(code):
        image.extend(bytes(offset + len(code) - len(image)))
    image[offset:offset + len(code)] = code
    machine = Machine(cfg, image, dram_base=dram_base, window=window, queue_depth=queue_depth)
    return machine.run(prog_base, len(words))
