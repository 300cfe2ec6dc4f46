"""The one description of a generated accelerator.

Every other part of the project (gateware, golden model, compiler, reports) derives its
widths and depths from a :class:`Config`, so nothing about the hardware is written twice.
"""

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import ClassVar


__all__ = ["Config", "ConfigError", "ARRAY_FEEDS", "DATAFLOWS", "MAC_DSPS", "OUTPUT_LANES",
           "PERF_COUNTERS"]


DATAFLOWS = ("ws", "os", "both")
OUTPUT_LANES = ("pipelined", "serial")
MAC_DSPS = ("generic", "ice40_dual")
ARRAY_FEEDS = ("systolic", "broadcast")
PERF_COUNTERS = ("all", "basic")
UNIT_COMMANDS = ("copy", "queue")
UNIT_REPORTS = ("direct", "registered")
ACC_FORWARDS = ("bypass", "stall")
FETCH_STORAGES = ("registers", "block_ram")
LOAD_WRITES = ("rows", "columns")
DMA_CMD_FIELDS = ("full", "legal")
DMA_BURST_GENS = (1, 2)


class ConfigError(ValueError):
    """An invalid configuration; the message names the parameter and its allowed range."""


def _knob(default, help):
    return field(default=default, metadata={"help": help})


def _is_pow2(value):
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True)
class Config:
    """Parameters of one accelerator instance.

    Array and arithmetic
      rows, cols        systolic array shape (R x C MAC cells); rectangular shapes allowed.
      input_width       bits of an activation (signed); stored one per byte in memory.
      weight_width      bits of a weight (signed); stored one per byte in memory.
      acc_width         bits of an accumulator (signed, wrapping two's complement).
      output_width      bits of a requantised output (signed, saturating).
      dataflow          "ws" (weight-stationary), "os" (output-stationary) or "both".
      mac_dsp           how the array's multipliers are built: "generic" (``a * b``, mapped by
                        the synthesis tool) or "ice40_dual" (iCE40 builds: two per SB_MAC16
                        in its dual 8x8 mode, see hw/ice40_mac.py; elsewhere generic).
      array_feed        how an activation crosses an array row: "systolic" (one cell per
                        cycle) or "broadcast" (WS only, small arrays: the whole row in its
                        cycle, so no horizontal or deskew registers; latency R+1, not R+C).
      weight_buffers    WS weights per cell: 2 (the next tile preloads while the current
                        group streams) or 1 (broadcast arrays, small FPGAs: a tile loads
                        straight into the active weights, row by row, once the previous
                        group's last beat is in, and its group waits for the whole tile).

    Memories
      scratchpad_kib    scratchpad capacity; rows of ``sp_row_elems`` bytes.
      scratchpad_banks  single-port banks the scratchpad is split into (by high address bits).
      accumulator_kib   accumulator capacity; rows of ``cols`` accumulators (4 bytes each).
      output_lanes      accumulator columns requantised per cycle by the output pipeline.
      output_lane       "pipelined" (DSP multipliers, ``C/output_lanes`` cycles per row,
                        quantisation parameters in flip-flops) or "serial" (small FPGAs: a
                        shift-add lane, ``36 + shift`` cycles per int8 value, no DSP, the
                        quantisation parameters in block RAM; needs ``output_lanes=1``).
      sp_read_buffer    rows each scratchpad read port holds for a stalled reader: 2 (its
                        ``read_req.ready`` is a register), or 1 (``read_req.ready`` follows
                        ``read_resp.ready`` combinationally; one row register fewer a port).
      acc_read_ports    2: the store path has its own accumulator read port; 1: it reads
                        through the read-modify-write port between writes (one block-RAM
                        copy of the rows instead of two).
      load_writes       how a LOAD fills accumulator and qparam rows: "rows" (the row is
                        assembled from its bus beats in registers and written at once) or
                        "columns" (a 32-bit bus, one-beat scratchpad rows and the serial
                        output lane: each beat writes its own int32 column, and the columns
                        past a short row are written with zeros, one per cycle; no assembly
                        registers).
      acc_forward       how a read sees the row written in the same cycle: "bypass" (the
                        read ports are transparent, so back-to-back accumulates to one row
                        run at full rate) or "stall" (iCE40 block RAM has no transparent
                        port, so a bypass costs a register and a mux per bit of a row: the
                        accumulate or read of that row waits one cycle instead; an
                        accumulate checks only the row's lowest address bit, so it also
                        waits after a write of another row of that parity, never in a
                        sequence of rows).

    Bus
      dma_data_width    AXI4 master data width in bits (32, 64 or 128).
      addr_width        AXI address width in bits.
      id_width          AXI ID width in bits.
      max_burst_beats   longest INCR burst the DMA issues (1..256, power of two).
      max_outstanding   read bursts in flight at once.
      dram_base, dram_size
                        reset value of the DRAM window the DMA may touch.
      dma_cmd_fields    "full": the DMA takes any 2D command (16-bit ``rows`` and
                        ``row_bytes``); "legal" (small FPGAs): those fields, and the DMA's
                        row arithmetic, only as wide as the largest value a legal LOAD /
                        STORE or an instruction fetch issues (``hw.burst.dma_cmd_limits``).
      dma_burst_gens    2: the read and the write engine each split their commands into
                        bursts, so a load and a store overlap on the bus; 1 (small FPGAs):
                        one burst generator serves both, a command at a time (a write holds
                        it until its status), so they take turns.

    Control (small FPGAs trade these buffers for logic)
      queue_depth       instructions waiting in each of the load / exec / store queues.
      fetch_buffer      chunks the fetch buffer holds: 2 (the next chunk arrives while one
                        is dispatched) or 1 (the next is requested once the buffer is empty:
                        ``fetch_chunk`` instruction rows of flip-flops fewer; small FPGAs).
      fetch_chunk       instructions per instruction-fetch DMA command; the fetch buffer
                        holds ``fetch_buffer`` chunks.
      fetch_storage     "registers" (or a memory, for more than two rows) or "block_ram"
                        (one instruction row, ``fetch_buffer = fetch_chunk = 1``: in block
                        RAM instead of 128 flip-flops; the row is dispatched a cycle later).
      perf_counters     "all" or "basic": only PERF_CYCLES and the DMA byte counts count,
                        the other PERF_* registers read 0.
      unit_commands     "copy": the load and store units copy the instruction they run out
                        of their queue, which takes the next one meanwhile; "queue": they run
                        the head of their queue and free its slot when it completes (no
                        copy; the queue then holds the running instruction too), and the
                        exec unit issues its queue's head in place, freeing the slot as it
                        starts it.
      unit_reports      "direct": the controller takes a unit's completion (its token
                        pushes) and its fault in the cycle the unit reports them;
                        "registered" (small FPGAs): a cycle later, from a register, so the
                        path from a unit's datapath into the token counters and the error
                        capture is cut. A token then reaches the next unit a cycle later;
                        no unit is granted and nothing is dispatched in the cycle a fault
                        waits in the register, so a fault still stops the machine at the
                        faulting instruction (a watchdog expiry or abort in that cycle
                        takes precedence, as in the cycle of the fault).
    """

    rows: int = _knob(16, "systolic array rows R (the reduction dimension in WS)")
    cols: int = _knob(16, "systolic array columns C (output channels per tile)")
    input_width: int = _knob(8, "activation width in bits (signed, 2..8)")
    weight_width: int = _knob(8, "weight width in bits (signed, 2..8)")
    acc_width: int = _knob(32, "accumulator width in bits (wrapping, up to 32)")
    output_width: int = _knob(8, "requantised output width in bits (saturating, 2..8)")
    dataflow: str = _knob("both", "dataflows built: ws, os or both (chosen per MATMUL)")
    mac_dsp: str = _knob("generic", "array multipliers: generic, or ice40_dual (iCE40 builds:"
                                    " two per SB_MAC16, dual 8x8 mode)")
    array_feed: str = _knob("systolic", "activations cross an array row: systolic (a cell per"
                                        " cycle), or broadcast (WS only, small arrays: the"
                                        " whole row at once, no horizontal or deskew"
                                        " registers, latency R+1)")
    weight_buffers: int = _knob(2, "WS weights per cell: 2 (the next tile preloads while a"
                                   " group streams), or 1 (broadcast only: tiles load"
                                   " between groups, no shadow weights; small FPGAs)")
    scratchpad_kib: int = _knob(256, "scratchpad capacity in KiB")
    scratchpad_banks: int = _knob(4, "single-port scratchpad banks (power of two)")
    accumulator_kib: int = _knob(64, "accumulator capacity in KiB (rows of cols int32)")
    output_lanes: int = _knob(0, "columns requantised per cycle (0 = cols)")
    output_lane: str = _knob("pipelined", "requantisation lane: pipelined, or serial (no DSP,"
                                          " 36+shift cycles per value, qparams in block RAM)")
    sp_read_buffer: int = _knob(2, "rows a scratchpad read port holds: 2 (ready is a register),"
                                   " or 1 (ready follows read_resp.ready; small FPGAs)")
    acc_read_ports: int = _knob(2, "accumulator read ports: 2, or 1 (the store path reads"
                                   " between writes; half the block RAM)")
    load_writes: str = _knob("rows", "LOAD into accumulator/qparam rows: rows (assembled, one"
                                     " write a row), or columns (a write a 32-bit column; needs"
                                     " a 32-bit bus, serial lane; small FPGAs)")
    acc_forward: str = _knob("bypass", "a read of the row being written: bypass (transparent"
                                       " ports), or stall (wait a cycle; no bypass registers,"
                                       " iCE40)")
    dma_data_width: int = _knob(128, "AXI4 master data width in bits: 32, 64 or 128")
    addr_width: int = _knob(32, "AXI address width in bits")
    id_width: int = _knob(4, "AXI ID width in bits")
    max_burst_beats: int = _knob(256, "longest DMA burst in beats (power of two, <= 256)")
    max_outstanding: int = _knob(8, "DMA read bursts in flight")
    dram_base: int = _knob(0, "reset value of the DRAM window base address")
    dram_size: int = _knob(1 << 31, "reset value of the DRAM window size in bytes")
    dma_cmd_fields: str = _knob("full", "DMA command rows/row_bytes: full (16 bits, any 2D"
                                        " command), or legal (as wide as legal LOAD/STORE and"
                                        " fetch commands need; small FPGAs)")
    dma_burst_gens: int = _knob(2, "DMA burst generators: 2 (reads and writes overlap), or 1"
                                   " (shared, the directions take turns; small FPGAs)")
    queue_depth: int = _knob(8, "instructions waiting in each unit queue (1..64)")
    fetch_chunk: int = _knob(8, "instructions per fetch DMA command (1..64); fetch_buffer of"
                                 " them are buffered")
    fetch_buffer: int = _knob(2, "chunks the fetch buffer holds: 2 (the next arrives while one"
                                 " is dispatched), or 1 (fetched once it is empty; small FPGAs)")
    fetch_storage: str = _knob("registers", "where the fetch buffer's rows are: registers, or"
                                            " block_ram (one row: fetch_buffer=fetch_chunk=1;"
                                            " small FPGAs)")
    perf_counters: str = _knob("all", "performance counters: all, or basic (PERF_CYCLES and the"
                                      " DMA byte counts; the other PERF_* read 0)")
    unit_commands: str = _knob("copy", "load/store/exec units: copy the instruction they run out"
                                       " of the queue, or queue (run its head, free the slot when"
                                       " done, exec when started: no copy, small FPGAs)")
    unit_reports: str = _knob("direct", "unit completions and faults: direct (taken the cycle"
                                        " they happen), or registered (a cycle later; a"
                                        " shorter path, small FPGAs)")

    MAX_DIM: ClassVar[int] = 512
    MAX_QUEUE: ClassVar[int] = 64

    def __post_init__(self):
        if self.output_lanes == 0:
            object.__setattr__(self, "output_lanes", self.cols)
        self._validate()

    # -- validation ---------------------------------------------------------------------------

    def _check(self, name, ok, allowed):
        if not ok:
            raise ConfigError(f"Config.{name}={getattr(self, name)!r} is invalid: {allowed}")

    def _validate(self):
        for name in ("rows", "cols"):
            value = getattr(self, name)
            self._check(name, isinstance(value, int) and 1 <= value <= self.MAX_DIM,
                        f"must be an integer from 1 to {self.MAX_DIM}")
        for name in ("input_width", "weight_width"):
            value = getattr(self, name)
            self._check(name, isinstance(value, int) and 2 <= value <= 8,
                        "must be from 2 to 8 bits (elements are stored one per byte)")
        self._check("output_width", isinstance(self.output_width, int)
                    and 2 <= self.output_width <= 8, "must be from 2 to 8 bits")
        self._check("acc_width", isinstance(self.acc_width, int)
                    and self.input_width + self.weight_width <= self.acc_width <= 32,
                    f"must be from input_width+weight_width ({self.input_width + self.weight_width})"
                    " to 32 bits")
        self._check("dataflow", self.dataflow in DATAFLOWS, f"must be one of {DATAFLOWS}")
        self._check("mac_dsp", self.mac_dsp in MAC_DSPS, f"must be one of {MAC_DSPS}")
        self._check("array_feed", self.array_feed in ARRAY_FEEDS, f"must be one of {ARRAY_FEEDS}")
        self._check("array_feed", self.array_feed == "systolic" or self.dataflow == "ws",
                    "broadcast is for the WS dataflow alone: it needs dataflow=ws")
        self._check("weight_buffers", self.weight_buffers in (1, 2), "must be 1 or 2")
        self._check("weight_buffers", self.weight_buffers == 2
                    or self.array_feed == "broadcast",
                    "1 (no shadow weights) needs array_feed=broadcast")
        self._check("scratchpad_banks", isinstance(self.scratchpad_banks, int)
                    and _is_pow2(self.scratchpad_banks) and self.scratchpad_banks <= 64,
                    "must be a power of two from 1 to 64")
        self._check("scratchpad_kib", isinstance(self.scratchpad_kib, int)
                    and self.scratchpad_kib >= 1, "must be a positive number of KiB")
        self._check("scratchpad_kib", self.sp_rows % self.scratchpad_banks == 0
                    and _is_pow2(self.sp_rows // self.scratchpad_banks)
                    and self.sp_rows // self.scratchpad_banks >= max(self.rows, self.cols),
                    f"must give a power-of-two number of {self.sp_row_bytes}-byte rows per bank,"
                    f" at least max(rows, cols) of them (got {self.sp_rows} rows"
                    f" over {self.scratchpad_banks} banks)")
        self._check("accumulator_kib", isinstance(self.accumulator_kib, int)
                    and self.accumulator_kib >= 1, "must be a positive number of KiB")
        self._check("accumulator_kib", _is_pow2(self.acc_rows) and self.acc_rows >= 2 * self.rows,
                    f"must give a power-of-two number of {self.acc_row_bytes}-byte rows, at least"
                    f" 2*rows={2 * self.rows} (got {self.acc_rows})")
        self._check("output_lanes", isinstance(self.output_lanes, int)
                    and 1 <= self.output_lanes <= self.cols
                    and self.cols % self.output_lanes == 0, "must divide cols")
        self._check("output_lane", self.output_lane in OUTPUT_LANES,
                    f"must be one of {OUTPUT_LANES}")
        self._check("output_lane", self.output_lane != "serial" or self.output_lanes == 1,
                    "serial requantises one column at a time: it needs output_lanes=1")
        self._check("acc_read_ports", self.acc_read_ports in (1, 2), "must be 1 or 2")
        self._check("load_writes", self.load_writes in LOAD_WRITES,
                    f"must be one of {LOAD_WRITES}")
        self._check("load_writes", self.load_writes == "rows"
                    or (self.dma_data_width == 32 and self.sp_row_bytes <= 4
                        and self.output_lane == "serial"),
                    "columns writes a 32-bit beat per int32 column: it needs"
                    " dma_data_width=32, scratchpad rows of at most 4 bytes"
                    " (max(rows, cols) <= 4) and output_lane=serial")
        self._check("acc_forward", self.acc_forward in ACC_FORWARDS,
                    f"must be one of {ACC_FORWARDS}")
        self._check("sp_read_buffer", self.sp_read_buffer in (1, 2), "must be 1 or 2")
        self._check("fetch_buffer", self.fetch_buffer in (1, 2), "must be 1 or 2")
        self._check("fetch_storage", self.fetch_storage in FETCH_STORAGES,
                    f"must be one of {FETCH_STORAGES}")
        self._check("dma_data_width", self.dma_data_width in (32, 64, 128), "must be 32, 64 or 128")
        self._check("addr_width", isinstance(self.addr_width, int)
                    and 16 <= self.addr_width <= 32, "must be from 16 to 32")
        self._check("id_width", isinstance(self.id_width, int)
                    and 1 <= self.id_width <= 8, "must be from 1 to 8")
        self._check("max_burst_beats", isinstance(self.max_burst_beats, int)
                    and _is_pow2(self.max_burst_beats) and self.max_burst_beats <= 256,
                    "must be a power of two from 1 to 256")
        self._check("max_outstanding", isinstance(self.max_outstanding, int)
                    and 1 <= self.max_outstanding <= 16, "must be from 1 to 16")
        self._check("dram_base", isinstance(self.dram_base, int)
                    and 0 <= self.dram_base < (1 << self.addr_width),
                    "must be an address below 2**addr_width")
        self._check("dram_size", isinstance(self.dram_size, int)
                    and 0 < self.dram_size <= (1 << self.addr_width) - self.dram_base,
                    "must be positive and end within the address space")
        self._check("perf_counters", self.perf_counters in PERF_COUNTERS,
                    f"must be one of {PERF_COUNTERS}")
        self._check("unit_commands", self.unit_commands in UNIT_COMMANDS,
                    f"must be one of {UNIT_COMMANDS}")
        self._check("unit_reports", self.unit_reports in UNIT_REPORTS,
                    f"must be one of {UNIT_REPORTS}")
        self._check("dma_cmd_fields", self.dma_cmd_fields in DMA_CMD_FIELDS,
                    f"must be one of {DMA_CMD_FIELDS}")
        self._check("dma_burst_gens", self.dma_burst_gens in DMA_BURST_GENS,
                    f"must be one of {DMA_BURST_GENS}")
        for name in ("queue_depth", "fetch_chunk"):
            value = getattr(self, name)
            self._check(name, isinstance(value, int) and 1 <= value <= self.MAX_QUEUE,
                        f"must be an integer from 1 to {self.MAX_QUEUE}")
        self._check("fetch_storage", self.fetch_storage == "registers"
                    or self.fetch_buffer * self.fetch_chunk == 1,
                    "block_ram holds one row: it needs fetch_buffer=1 and fetch_chunk=1")

    # -- derived quantities ---------------------------------------------------------------------

    @property
    def has_ws(self):
        return self.dataflow in ("ws", "both")

    @property
    def has_os(self):
        return self.dataflow in ("os", "both")

    @property
    def sp_row_elems(self):
        """Elements in one scratchpad row: wide enough for an activation (R) or weight (C) row."""
        return max(self.rows, self.cols)

    @property
    def sp_row_bytes(self):
        return self.sp_row_elems

    @property
    def sp_rows(self):
        return self.scratchpad_kib * 1024 // self.sp_row_bytes

    @property
    def sp_bank_rows(self):
        return self.sp_rows // self.scratchpad_banks

    @property
    def acc_row_bytes(self):
        return self.cols * 4

    @property
    def acc_rows(self):
        return self.accumulator_kib * 1024 // self.acc_row_bytes

    @property
    def bus_bytes(self):
        return self.dma_data_width // 8

    @property
    def peak_macs_per_cycle(self):
        return self.rows * self.cols

    # -- serialisation ----------------------------------------------------------------------------

    def to_dict(self):
        return dataclasses.asdict(self)

    def to_json(self):
        derived = {
            "sp_row_elems": self.sp_row_elems, "sp_rows": self.sp_rows,
            "sp_bank_rows": self.sp_bank_rows, "acc_rows": self.acc_rows,
            "bus_bytes": self.bus_bytes,
        }
        return json.dumps({"config": self.to_dict(), "derived": derived}, indent=2) + "\n"

    @classmethod
    def from_dict(cls, data):
        if "config" in data:
            data = data["config"]
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown Config parameter(s): {', '.join(sorted(unknown))}")
        return cls(**data)

    @classmethod
    def from_json(cls, text):
        return cls.from_dict(json.loads(text))

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_json(f.read())

    def replace(self, **changes):
        # output_lanes equal to cols was most likely the "= cols" default: keep it following cols.
        if "cols" in changes and "output_lanes" not in changes and self.output_lanes == self.cols:
            changes["output_lanes"] = 0
        return dataclasses.replace(self, **changes)

    @classmethod
    def knobs(cls):
        """``(name, type, default, help)`` of every parameter, for command lines and docs."""
        return [(f.name, f.type if isinstance(f.type, type) else type(f.default), f.default,
                 f.metadata["help"]) for f in fields(cls)]
