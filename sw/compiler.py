"""The tiling compiler: GEMM, conv2d (im2col) and MLP programs for one Config.

A :class:`Program` is the instruction words plus a DRAM layout (a bump allocator from
``dram_base``) and the host-side code that packs inputs into a DRAM image and unpacks the
outputs from the final DRAM.

Tiling (both dataflows share the loop nest ``for m-block i: for n-tile j: for k-chunk k``,
one *step* per k-chunk, one output *tile* per ``(i, j)``):

- **WS**: a step PRELOADs a weight tile of ``kc <= R`` rows of B by ``C`` columns and
  streams ``mt`` rows of ``A[m, k0:k0+kc]`` (MATMUL count); ``mt`` is at most half the
  accumulator.
- **OS**: an output tile is ``R`` rows x ``C`` columns; a step streams ``kc`` rows of
  ``A^T`` (the runtime stores A transposed) and of B.

Operand reuse: an A chunk is *resident* when the m-block's whole K fits, so it is loaded on
the first n-tile and reused by the others (A is read once instead of once per n-tile); B
tiles are resident when all of B fits beside A, loaded on the first m-block. Otherwise an
operand is streamed through a ring of ``depth`` step buffers. :func:`_plan` picks residency,
``mt`` (WS) or ``kc`` (OS) and the depth with the lowest estimated cycles; A slots alternate
between two banks and B slots use the others, so DMA writes and array reads rarely collide.

Double buffering (VTA's scheme): the loads of step ``s`` run up to ``depth`` (2) steps ahead
of exec; the accumulator is split in halves, output tile ``t`` uses half ``t % 2``. Tokens:
the last LOAD of step ``s`` pushes to exec, whose first instruction of step ``s`` pops it; the
last exec instruction of step ``s`` pushes back to load and the loads of step ``s + depth``
pop it (whatever step ``s`` read may then be overwritten); steps without loads take part in
neither. Between exec and store the same with accumulator halves. Pushes with no matching pop
are left out, so the counters are back to zero after each GEMM. Quantisation parameters: with
at most two n-tiles each keeps a qparam slot; otherwise tile ``t`` reloads slot ``t % 2``
once the STORE of tile ``t - 2`` is done, which the loads learn through exec (the first exec
instruction of tile ``t`` pops that store's token, its push releases the loads ``depth``
steps later); tiles of at most ``depth`` steps have no such later step and use a FENCE.
Instructions are emitted in an order that runs without blocking when executed one by one,
so no queue depth can deadlock.

Dataflow: without an explicit choice, a GEMM with fewer rows than the array (``M < R``, a
batch-1 dense layer) runs output-stationary when the config builds it: WS would spend a
PRELOAD of ``R`` weight rows and a short DMA command per ``R x C`` tile on a single
activation row, OS streams ``kc`` reduction rows per step. Chained MLP layers stay WS.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from sw import isa
from sw.isa import Dataflow, LoadDst


__all__ = ["CompileError", "Tensor", "Program", "GemmQuant", "compile_gemm", "compile_conv2d",
           "compile_mlp", "choose_dataflow", "conv2d_output_shape", "conv2d_padding", "im2col",
           "OUT_DTYPES"]

OUT_DTYPES = ("int8", "int32")
ALIGN = 64
_ELEM_BYTES = {"int8": 1, "int32": 4}
_FIELD_MAX = (1 << isa.INSTRUCTIONS["LOAD"].field("rows").width) - 1
_QPARAM_ROWS = len(isa.QPARAM_KINDS)
_STEP_OVERHEAD = 4          # cycles a step costs beyond its data (token hand-over, PRELOAD)
_FENCE_OVERHEAD = 64        # cycles to drain and restart the queues around a FENCE
_OS_KC_CANDIDATES = 8       # OS chunk heights tried: the largest, then halved


class CompileError(ValueError):
    """A shape or parameter the compiler cannot handle; the message says which and why."""


@dataclass
class Tensor:
    """A DRAM buffer: ``shape`` elements of ``dtype`` at ``addr`` (row-major)."""
    name: str
    addr: int
    shape: tuple
    dtype: str

    @property
    def nbytes(self):
        return int(np.prod(self.shape)) * _ELEM_BYTES[self.dtype]


@dataclass
class GemmQuant:
    """The output pipeline of one GEMM: per-tensor values go into CONFIG, per-column ones
    (``per_column``) and a bias (``bias``) are packed into DRAM and LOADed as qparams."""
    out_dtype: str = "int8"
    bias: bool = False
    per_column: bool = False
    multiplier: int = 0
    shift: int = 0
    zero_point: int = 0
    clamp: tuple | None = None

    @property
    def uses_qparams(self):
        return self.bias or self.per_column


class Program:
    """Instruction words, DRAM layout and host packing for one compiled workload."""

    def __init__(self, cfg, dram_base=None):
        self.cfg = cfg
        self.dram_base = cfg.dram_base if dram_base is None else dram_base
        self.words = []
        self.tensors = {}
        self.macs = 0
        self.prog_base = None
        self._end = self.dram_base
        self._encoders = []
        self._decoder = None

    # -- layout ----------------------------------------------------------------------------

    def alloc(self, name, shape, dtype, encode=None):
        """Reserve an aligned DRAM buffer; ``encode(inputs)`` gives its initial contents."""
        addr = -(-self._end // ALIGN) * ALIGN
        tensor = Tensor(name, addr, tuple(int(d) for d in shape), dtype)
        self._end = addr + tensor.nbytes
        self.tensors[name] = tensor
        if encode is not None:
            self._encoders.append((tensor, encode))
        return tensor

    def finish(self, decode):
        """Place the program after the data; ``decode(read)`` builds the result, where
        ``read(name)`` returns a tensor's contents from the final DRAM."""
        self.prog_base = -(-self._end // ALIGN) * ALIGN
        self._end = self.prog_base + len(self.words) * isa.INSTR_BYTES
        self._decoder = decode
        self._check_window()
        return self

    def _check_window(self):
        base, size = self.cfg.dram_base, self.cfg.dram_size
        if self.dram_base < base or self._end > base + size:
            raise CompileError(f"the workload needs DRAM [{self.dram_base:#x}, {self._end:#x})"
                               f" but the window is [{base:#x}, {base + size:#x})")

    @property
    def prog_count(self):
        return len(self.words)

    @property
    def size(self):
        return self._end - self.dram_base

    # -- host side -------------------------------------------------------------------------

    def pack(self, inputs):
        """The DRAM image (``size`` bytes from ``dram_base``) for the named input arrays."""
        image = bytearray(self.size)
        for tensor, encode in self._encoders:
            data = np.ascontiguousarray(encode(inputs))
            if data.shape != tensor.shape:
                raise CompileError(f"{tensor.name} has shape {data.shape}, expected {tensor.shape}")
            raw = data.astype("<i4" if tensor.dtype == "int32" else np.int8).tobytes()
            offset = tensor.addr - self.dram_base
            image[offset:offset + len(raw)] = raw
        code = isa.to_bytes(self.words)
        offset = self.prog_base - self.dram_base
        image[offset:offset + len(code)] = code
        return bytes(image)

    def read(self, dram, name):
        tensor = self.tensors[name]
        offset = tensor.addr - self.dram_base
        dtype = "<i4" if tensor.dtype == "int32" else np.int8
        flat = np.frombuffer(bytes(dram), dtype, int(np.prod(tensor.shape)), offset)
        return flat.reshape(tensor.shape).astype(np.int32 if tensor.dtype == "int32" else np.int8)

    def unpack(self, dram):
        return self._decoder(lambda name: self.read(dram, name))


# -- tiling plans ------------------------------------------------------------------------------

@dataclass
class _Plan:
    """Tile sizes and scratchpad layout of one GEMM (see the module docstring).

    A chunk ``(i, k)`` (``a_rows`` rows) lives in ``a_slots[(i * k_chunks + k) % len]`` when A
    is resident (loaded on the first n-tile of its m-block, reused by the others), else in
    ``a_slots[s % depth]`` for step ``s``; B tile ``(j, k)`` (``kc`` rows) likewise in
    ``b_slots[j * k_chunks + k]`` (loaded on the first m-block) or ``b_slots[s % depth]``.
    """
    dataflow: Dataflow
    depth: int          # steps the loads may run ahead of exec (1 or 2)
    kc: int             # reduction rows per step
    mt: int             # output rows per tile
    k_chunks: int
    a_rows: int         # scratchpad rows of one A chunk
    a_resident: bool
    b_resident: bool
    a_slots: list
    b_slots: list

    def a_slot(self, s, step):
        index = step.i * self.k_chunks + step.k if self.a_resident else s
        return self.a_slots[index % len(self.a_slots)]

    def b_slot(self, s, step):
        index = step.j * self.k_chunks + step.k if self.b_resident else s
        return self.b_slots[index % len(self.b_slots)]


def _layout(cfg, a_count, a_rows, b_count, b_rows, k_chunks):
    """Base rows of ``a_count`` A slots and ``b_count`` B slots, or None if they do not fit.

    The array streams one A row per cycle from a single-port bank, so a LOAD filling another
    slot, or a PRELOAD reading a B tile, in that bank would wait. Layouts tried in order:

    1. A slots alternate between banks 0 and 1, B slots use the others;
    2. A slot ``c`` in bank ``c % banks`` (for A chunks too large for two banks), the B slots
       of chunk ``k`` half the banks away from A chunk ``k``;

    each only if every slot fits in its bank; then 1 with slots wherever they fit, then the
    scratchpad as one flat region."""
    banks, bank_rows = cfg.scratchpad_banks, cfg.sp_bank_rows
    pair = min(2, banks)

    def paired_b(b):
        return (pair + b % pair) % banks if banks >= 4 else (b + 1) % pair

    def spread_b(b):
        return (b % k_chunks + banks // 2) % banks

    schemes = ((banks, bank_rows, lambda c: c % pair, paired_b, True),
               (banks, bank_rows, lambda c: c % banks, spread_b, True),
               (banks, bank_rows, lambda c: c % pair, paired_b, False),
               (1, cfg.sp_rows, lambda c: 0, lambda b: 0, False))
    for nb, rows, a_bank, b_bank, strict in schemes:
        fill = [0] * nb

        def place(size, preferred):
            for bank in [preferred] + ([] if strict else list(range(nb))):
                if fill[bank] + size <= rows:
                    fill[bank] += size
                    return bank * rows + fill[bank] - size
            return None

        b_bases = [place(b_rows, b_bank(b)) for b in range(b_count)]
        a_bases = [place(a_rows, a_bank(c)) for c in range(a_count)]
        if None not in a_bases + b_bases:
            return a_bases, b_bases
    return None


def _try_plan(cfg, dataflow, M, K, N, kc, mt, depth, a_resident, b_resident):
    k_chunks, n_tiles = math.ceil(K / kc), math.ceil(N / cfg.cols)
    a_rows = mt if dataflow == Dataflow.WS else kc
    a_count = max(k_chunks, depth) if a_resident else depth
    b_count = n_tiles * k_chunks if b_resident else depth
    placed = _layout(cfg, a_count, a_rows, b_count, kc, k_chunks)
    if placed is None:
        return None
    return _Plan(dataflow, depth, kc, mt, k_chunks, a_rows, a_resident, b_resident, *placed)


def _cost(cfg, plan, M, K, N, qparams):
    """Estimated cycles: DMA beats of the operand traffic, a per-step overhead and the drains
    of the FENCEs that short tiles need to reuse a qparam slot (:func:`_place_qparams`)."""
    m_blocks, n_tiles = math.ceil(M / plan.mt), math.ceil(N / cfg.cols)
    traffic = M * K * (1 if plan.a_resident else n_tiles) + \
        K * N * (1 if plan.b_resident else m_blocks)
    steps = m_blocks * n_tiles * plan.k_chunks
    cost = traffic / (cfg.dma_data_width // 8) + steps * _STEP_OVERHEAD
    if qparams and n_tiles > isa.QPARAM_SLOTS and plan.k_chunks <= plan.depth:
        cost += m_blocks * n_tiles * (plan.a_rows + plan.kc + _FENCE_OVERHEAD)
    return cost


def _largest_mt(cfg, dataflow, M, K, N, kc, depth, a_res, b_res):
    """The plan with the largest WS tile height that fits, balanced over the m-blocks."""
    lo, hi = 0, min(M, cfg.acc_rows // 2, _FIELD_MAX)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _try_plan(cfg, dataflow, M, K, N, kc, mid, depth, a_res, b_res) is None:
            hi = mid - 1
        else:
            lo = mid
    if lo == 0:
        return None
    mt = math.ceil(M / math.ceil(M / lo))
    return _try_plan(cfg, dataflow, M, K, N, kc, mt, depth, a_res, b_res)


def _plan(cfg, dataflow, M, K, N, qparams):
    """The cheapest plan (by :func:`_cost`): residency of A and B, tile sizes, buffer depth."""
    if dataflow == Dataflow.WS:
        kcs = [min(cfg.rows, K)]
    else:
        kcs, kc = [], min(K, _FIELD_MAX)
        while kc >= 1 and len(kcs) < _OS_KC_CANDIDATES:
            kcs.append(kc)
            kc //= 2
    best, best_cost = None, None
    for depth in (2, 1):
        for kc in kcs:
            for a_res in (True, False):
                for b_res in (True, False):
                    if dataflow == Dataflow.WS:
                        plan = _largest_mt(cfg, dataflow, M, K, N, kc, depth, a_res, b_res)
                    else:
                        plan = _try_plan(cfg, dataflow, M, K, N, kc, cfg.rows, depth, a_res,
                                         b_res)
                    if plan is None:
                        continue
                    cost = _cost(cfg, plan, M, K, N, qparams)
                    if best is None or cost < best_cost:
                        best, best_cost = plan, cost
        if best is not None:
            return best
    raise CompileError(f"the {cfg.sp_rows}-row scratchpad cannot hold one A and one B tile "
                       f"of the {M}x{K}x{N} GEMM")


def choose_dataflow(cfg, dataflow=None, M=None):
    """The requested dataflow, or (``None``) the default for a GEMM of ``M`` rows: OS for
    ``M < rows`` if built (``M=None``: chained layers, never), else WS if built."""
    if dataflow is None:
        if M is not None and M < cfg.rows and cfg.has_os:
            return Dataflow.OS
        return Dataflow.WS if cfg.has_ws else Dataflow.OS
    name = str(dataflow.name if isinstance(dataflow, Dataflow) else dataflow).lower()
    if name not in ("ws", "os"):
        raise CompileError(f"dataflow must be 'ws' or 'os', not {dataflow!r}")
    if name not in ("ws" if cfg.has_ws else "", "os" if cfg.has_os else ""):
        raise CompileError(f"this accelerator is built with dataflow={cfg.dataflow!r}: "
                           f"{name} is not available")
    return Dataflow[name.upper()]


# -- emission ----------------------------------------------------------------------------------

@dataclass
class _Step:
    i: int          # m-block
    j: int          # n-tile
    k: int          # k-chunk
    t: int          # output tile (i, j) in order
    last_k: bool
    loads: list = field(default_factory=list)
    execs: list = field(default_factory=list)


def _instr(name, **values):
    return [name, values]


def _steps(plan, M, N, C):
    m_blocks, n_tiles = math.ceil(M / plan.mt), math.ceil(N / C)
    t = 0
    for i in range(m_blocks):
        for j in range(n_tiles):
            for k in range(plan.k_chunks):
                yield _Step(i, j, k, t, k == plan.k_chunks - 1)
            t += 1


def _fill_step(cfg, plan, s, step, gemm):
    """The operand LOADs and exec instructions of step ``s``."""
    A, B, (M, K, N) = gemm["A"], gemm["B"], gemm["shape"]
    C = cfg.cols
    m0, n0, k0 = step.i * plan.mt, step.j * C, step.k * plan.kc
    mr, nc, kr = min(plan.mt, M - m0), min(C, N - n0), min(plan.kc, K - k0)
    a_addr, b_addr = plan.a_slot(s, step), plan.b_slot(s, step)
    acc = (step.t % 2) * (cfg.acc_rows // 2)
    if not plan.b_resident or step.i == 0:
        step.loads.append(_instr("LOAD", dst=LoadDst.SP, local_addr=b_addr, rows=kr,
                                 row_elems=nc, dram_addr=B.addr + k0 * N + n0, dram_stride=N))
    load_a = not plan.a_resident or step.j == 0
    if plan.dataflow == Dataflow.WS:
        if load_a:
            step.loads.append(_instr("LOAD", dst=LoadDst.SP, local_addr=a_addr, rows=mr,
                                     row_elems=kr, dram_addr=A.addr + m0 * K + k0,
                                     dram_stride=K))
        step.execs.append(_instr("PRELOAD", sp_addr=b_addr, k_rows=kr))
        step.execs.append(_instr("MATMUL", dataflow=Dataflow.WS, accumulate=int(step.k > 0),
                                 a_addr=a_addr, acc_addr=acc, count=mr))
    else:
        if load_a:
            step.loads.append(_instr("LOAD", dst=LoadDst.SP, local_addr=a_addr, rows=kr,
                                     row_elems=mr, dram_addr=A.addr + k0 * M + m0,
                                     dram_stride=M))
        step.execs.append(_instr("MATMUL", dataflow=Dataflow.OS, accumulate=int(step.k > 0),
                                 a_addr=a_addr, b_addr=b_addr, acc_addr=acc, count=kr))
    return mr, nc, m0, n0, acc


def _place_qparams(plan, steps, Q, N, C):
    """Add the qparam LOADs; return ``(qslot(step), steps preceded by a FENCE)``.

    With at most QPARAM_SLOTS n-tiles every n-tile keeps its own slot, loaded once. Otherwise
    tile ``t`` reuses slot ``t % 2`` of tile ``t - 2``: the first exec instruction of tile
    ``t`` waits for that tile's STORE (the accumulator-half token) and its buffer token
    releases the loads ``depth`` steps later, which is where the qparams go, as long as that
    step is still inside tile ``t``; only tiles of at most ``depth`` steps need a FENCE."""
    n_tiles, kc = math.ceil(N / C), plan.k_chunks
    shared = n_tiles > isa.QPARAM_SLOTS
    fences = set()
    for first in range(0, len(steps), kc):
        step = steps[first]
        slot = step.t % isa.QPARAM_SLOTS if shared else step.j
        if not shared and step.i > 0:
            continue
        at = first
        if shared and step.t >= isa.QPARAM_SLOTS:
            if kc > plan.depth:
                at = first + plan.depth
            else:
                fences.add(first)
        nc, n0 = min(C, N - step.j * C), step.j * C
        steps[at].loads.insert(0, _instr("LOAD", dst=LoadDst.QPARAM,
                                         local_addr=_QPARAM_ROWS * slot, rows=_QPARAM_ROWS,
                                         row_elems=nc, dram_addr=Q.addr + 4 * n0,
                                         dram_stride=4 * N))

    def qslot(step):
        return step.t % isa.QPARAM_SLOTS if shared else step.j
    return qslot, fences


def _config(cfg, quant):
    lo, hi = quant.clamp if quant.clamp is not None else \
        (-(1 << (cfg.output_width - 1)), (1 << (cfg.output_width - 1)) - 1)
    return _instr("CONFIG", multiplier=quant.multiplier if not quant.per_column else 0,
                  shift=quant.shift if not quant.per_column else 0, zero_point=quant.zero_point,
                  clamp_lo=lo, clamp_hi=hi, per_column=int(quant.per_column),
                  bias_en=int(quant.bias))


def _emit_gemm(prog, gemm, plan, quant):
    """Append the instructions of one GEMM (``gemm``: A, B, Q, Cout tensors and shape)."""
    cfg = prog.cfg
    M, K, N = gemm["shape"]
    Cout, out_int32 = gemm["Cout"], quant.out_dtype == "int32"
    esize = _ELEM_BYTES[quant.out_dtype]
    steps = list(_steps(plan, M, N, cfg.cols))
    D, S, T = plan.depth, len(steps), steps[-1].t + 1
    tiles = [_fill_step(cfg, plan, s, step, gemm) for s, step in enumerate(steps)]
    qslot, fences = (lambda step: 0), set()
    if gemm["Q"] is not None:
        qslot, fences = _place_qparams(plan, steps, gemm["Q"], N, cfg.cols)
    stores = []
    for s, step in enumerate(steps):
        mr, nc, m0, n0, acc = tiles[s]
        if step.loads:
            if s >= D:
                step.loads[0][1]["pop_next"] = 1
            step.loads[-1][1]["push_next"] = 1
            step.execs[0][1]["pop_prev"] = 1
        if step.k == 0 and step.t >= 2:
            step.execs[0][1]["pop_next"] = 1
        if s + D < S and steps[s + D].loads:
            step.execs[-1][1]["push_prev"] = 1
        if step.last_k:
            step.execs[-1][1]["push_next"] = 1
            stores.append(_instr("STORE", acc_addr=acc, out_int32=int(out_int32),
                                 qslot=qslot(step), rows=mr, row_elems=nc, pop_prev=1,
                                 push_prev=int(step.t + 2 < T),
                                 dram_addr=Cout.addr + (m0 * N + n0) * esize,
                                 dram_stride=N * esize))
    order = [_config(cfg, quant)]

    def emit_loads(s):
        if s in fences:
            order.append(_instr("FENCE"))
        order.extend(steps[s].loads)

    for s in range(min(D, S)):
        emit_loads(s)
    for s, step in enumerate(steps):
        order.extend(step.execs)
        if step.last_k:
            order.append(stores[step.t])
        if s + D < S:
            emit_loads(s + D)
    prog.words.extend(isa.encode(name, **values) for name, values in order)
    prog.macs += M * K * N


# -- front ends -------------------------------------------------------------------------------

def _check_dim(name, value):
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise CompileError(f"{name} must be a positive integer, not {value!r}")


def _check_quant(cfg, quant):
    if quant.out_dtype not in OUT_DTYPES:
        raise CompileError(f"out_dtype must be one of {OUT_DTYPES}, not {quant.out_dtype!r}")
    if quant.out_dtype == "int32":
        return
    lo, hi = -(1 << (cfg.output_width - 1)), (1 << (cfg.output_width - 1)) - 1
    clamp = quant.clamp if quant.clamp is not None else (lo, hi)
    if not lo <= clamp[0] <= clamp[1] <= hi:
        raise CompileError(f"clamp {tuple(clamp)} must satisfy {lo} <= lo <= hi <= {hi}")
    zp = isa.INSTRUCTIONS["CONFIG"].field("zero_point")
    if not zp.min <= quant.zero_point <= zp.max:
        raise CompileError(f"zero_point {quant.zero_point} is outside {zp.min}..{zp.max}")
    if not quant.per_column:
        if not -(1 << 31) <= quant.multiplier < (1 << 31):
            raise CompileError(f"multiplier {quant.multiplier} is not an int32")
        if not 0 <= quant.shift <= 31:
            raise CompileError(f"shift {quant.shift} must be from 0 to 31")


def _qparam_encoder(N, bias_key, mult_key, shift_key):
    def encode(inputs):
        q = np.zeros((_QPARAM_ROWS, N), dtype=np.int64)
        if inputs.get(bias_key) is not None:
            q[0] = inputs[bias_key]
        if inputs.get(mult_key) is not None and np.ndim(inputs[mult_key]) > 0:
            q[1] = inputs[mult_key]
            q[2] = inputs[shift_key]
        return q
    return encode


def _add_gemm(prog, M, K, N, quant, dataflow, a_tensor, names, out_name, b_encoder=None):
    """Allocate B, qparams and the output of one GEMM reading ``a_tensor`` and emit it."""
    cfg = prog.cfg
    b = prog.alloc(names["B"], (K, N), "int8", b_encoder or (lambda inputs: inputs[names["B"]]))
    q = None
    if quant.uses_qparams:
        q = prog.alloc(names["Q"], (_QPARAM_ROWS, N), "int32",
                       _qparam_encoder(N, names["bias"], names["multiplier"], names["shift"]))
    cout = prog.alloc(out_name, (M, N), quant.out_dtype)
    plan = _plan(cfg, dataflow, M, K, N, quant.uses_qparams)
    _emit_gemm(prog, dict(A=a_tensor, B=b, Q=q, Cout=cout, shape=(M, K, N)), plan, quant)
    return cout


def compile_gemm(cfg, A_shape, B_shape, *, bias=False, per_column=False, multiplier=0,
                 shift=0, zero_point=0, clamp=None, out_dtype="int8", dataflow=None,
                 dram_base=None, a_encoder=None, b_encoder=None, decoder=None):
    """``C = A @ B`` (M x K times K x N, int8) with the output pipeline, as a Program.

    ``pack`` takes ``{"A", "B"}`` plus ``"bias"`` (int32, N) when ``bias`` and per-column
    ``"multiplier"`` / ``"shift"`` (N) when ``per_column``; ``unpack`` returns C.
    ``a_encoder(inputs)``, ``b_encoder(inputs)`` and ``decoder(C)`` replace the host-side
    packing of A and B and the unpacking of C (conv2d: im2col, weight reshape, NHWC output).
    """
    if len(A_shape) != 2 or len(B_shape) != 2:
        raise CompileError(f"A and B must be matrices, got shapes {A_shape} and {B_shape}")
    (M, K), (K2, N) = A_shape, B_shape
    for name, value in (("M", M), ("K", K), ("N", N)):
        _check_dim(name, value)
    if K != K2:
        raise CompileError(f"A is {M}x{K} but B is {K2}x{N}: inner dimensions differ")
    quant = GemmQuant(out_dtype, bool(bias), bool(per_column), int(multiplier), int(shift),
                      int(zero_point), tuple(clamp) if clamp is not None else None)
    _check_quant(cfg, quant)
    flow = choose_dataflow(cfg, dataflow, M)
    prog = Program(cfg, dram_base)
    get_a = a_encoder or (lambda inputs: inputs["A"])
    if flow == Dataflow.OS:
        a = prog.alloc("A_T", (K, M), "int8", lambda inputs: np.asarray(get_a(inputs)).T)
    else:
        a = prog.alloc("A", (M, K), "int8", get_a)
    names = dict(B="B", Q="qparams", bias="bias", multiplier="multiplier", shift="shift")
    _add_gemm(prog, M, K, N, quant, flow, a, names, "C", b_encoder)
    prog.words.append(isa.encode("HALT"))
    finish = decoder or (lambda c: c)
    return prog.finish(lambda read: finish(read("C")))


def conv2d_padding(in_size, kernel, stride, padding):
    """``(pad_before, pad_after, out_size)`` for one spatial axis (TF 'same'/'valid' or an int)."""
    if padding == "valid":
        out = (in_size - kernel) // stride + 1
        return 0, 0, out
    if padding == "same":
        out = -(-in_size // stride)
        total = max((out - 1) * stride + kernel - in_size, 0)
        return total // 2, total - total // 2, out
    if isinstance(padding, (int, np.integer)) and padding >= 0:
        out = (in_size + 2 * padding - kernel) // stride + 1
        return int(padding), int(padding), out
    raise CompileError(f"padding must be 'same', 'valid' or a non-negative int, not {padding!r}")


def conv2d_output_shape(x_shape, w_shape, stride, padding):
    N, H, W, _ = x_shape
    KH, KW, _, CO = w_shape
    return N, conv2d_padding(H, KH, stride, padding)[2], conv2d_padding(W, KW, stride, padding)[2], CO


def im2col(x, kh, kw, stride, padding):
    """NHWC ``x`` -> ``(N*OH*OW, KH*KW*Cin)`` patches, ordered like an HWIO weight reshape."""
    x = np.asarray(x)
    n, h, w, cin = x.shape
    pt, pb, oh = conv2d_padding(h, kh, stride, padding)
    pl, pr, ow = conv2d_padding(w, kw, stride, padding)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    cols = np.empty((n, oh, ow, kh, kw, cin), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, :, i, j, :] = xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :]
    return cols.reshape(n * oh * ow, kh * kw * cin)


def compile_conv2d(cfg, x_shape, w_shape, *, stride=1, padding="valid", **gemm_kwargs):
    """NHWC ``x`` conv HWIO ``w`` via host im2col and the GEMM path.

    ``pack`` takes ``{"X", "W"}`` (plus the GEMM's bias / per-column inputs); ``unpack``
    returns the NHWC output.
    """
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise CompileError(f"conv2d needs NHWC x and HWIO w, got {x_shape} and {w_shape}")
    _check_dim("stride", stride)
    if x_shape[3] != w_shape[2]:
        raise CompileError(f"x has {x_shape[3]} channels but w expects {w_shape[2]}")
    n, oh, ow, cout = conv2d_output_shape(x_shape, w_shape, stride, padding)
    if oh < 1 or ow < 1:
        raise CompileError(f"the {w_shape[0]}x{w_shape[1]} kernel does not fit the "
                           f"{x_shape[1]}x{x_shape[2]} input with padding {padding!r}")
    kh, kw, cin, _ = w_shape
    return compile_gemm(
        cfg, (n * oh * ow, kh * kw * cin), (kh * kw * cin, cout),
        a_encoder=lambda inputs: im2col(inputs["X"], kh, kw, stride, padding),
        b_encoder=lambda inputs: np.asarray(inputs["W"]).reshape(kh * kw * cin, cout),
        decoder=lambda c: c.reshape(n, oh, ow, cout), **gemm_kwargs)


def compile_mlp(cfg, batch, sizes, layers, *, dataflow=None, dram_base=None):
    """Dense layers ``x @ W0 -> ... -> @ W{L-1}`` in one program, activations staying in DRAM.

    ``sizes`` are the layer widths ``[in, hidden..., out]``; ``layers`` one :class:`GemmQuant`
    per layer (every layer but the last must output int8). ``pack`` takes ``{"X", "W0", ...,
    "bias0", "multiplier0", "shift0", ...}``; ``unpack`` returns the last layer's output.
    """
    _check_dim("batch", batch)
    if len(sizes) != len(layers) + 1 or not layers:
        raise CompileError(f"{len(sizes)} sizes need {len(sizes) - 1} layer quantisations, "
                           f"got {len(layers)}")
    for index, size in enumerate(sizes):
        _check_dim(f"sizes[{index}]", size)
    flow = choose_dataflow(cfg, dataflow, batch if len(layers) == 1 else None)
    if flow != Dataflow.WS and len(layers) > 1:
        raise CompileError("chained layers need the weight-stationary dataflow (an OS layer "
                           "reads A transposed, which a STORE cannot write)")
    prog = Program(cfg, dram_base)
    if flow == Dataflow.OS:
        activation = prog.alloc("X_T", (sizes[0], batch), "int8",
                                lambda inputs: np.asarray(inputs["X"]).T)
    else:
        activation = prog.alloc("X", (batch, sizes[0]), "int8", lambda inputs: inputs["X"])
    for index, quant in enumerate(layers):
        _check_quant(cfg, quant)
        if index < len(layers) - 1 and quant.out_dtype != "int8":
            raise CompileError(f"layer {index} feeds another layer and must output int8")
        if index:
            prog.words.append(isa.encode("FENCE"))
        names = {key: f"{key}{index}" for key in ("B", "Q", "bias", "multiplier", "shift")}
        names["B"] = f"W{index}"
        activation = _add_gemm(prog, batch, sizes[index], sizes[index + 1], quant, flow,
                               activation, names, f"Y{index}")
    prog.words.append(isa.encode("HALT"))
    last = f"Y{len(layers) - 1}"
    return prog.finish(lambda read: read(last))
