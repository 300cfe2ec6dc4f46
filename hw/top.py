"""The accelerator: Verilog top module ``tensor_core``."""

from amaranth.hdl import Module, Mux, ResetInserter, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, connect

from . import regmap
from .accumulator import Accumulator
from .axi import AXI4LiteSignature, AXI4Signature
from .axi_guard import AxiGuard
from .config import Config
from .controller import Controller
from .dma import Dma
from .exec_unit import SP_READ_PORTS, ExecUnit
from .fetch import Fetcher
from .load_unit import LoadUnit
from .read_arbiter import ReadArbiter
from .registers import Registers
from .scratchpad import Scratchpad
from .store_unit import StoreUnit
from .systolic import SystolicArray


__all__ = ["TensorCore"]

_FETCH, _LOAD = 0, 1   # read-engine clients, fetch first


class TensorCore(wiring.Component):
    """The whole accelerator: registers, controller, DMA, scratchpad, array, accumulator.

    Ports
      m_axi    Out(AXI4Signature(addr_width, dma_data_width, id_width)): DRAM (instructions,
               operands, results). Only addresses inside [DRAM_BASE, DRAM_BASE+DRAM_SIZE).
      s_axil   In(AXI4LiteSignature(regmap.ADDR_WIDTH, 32)): the registers of hw/regmap.py.
      irq      Out(1): IRQ_STATUS & IRQ_ENABLE (done, error), level.

    The host writes PROG_BASE / PROG_COUNT (and the DRAM window), then CTRL.start; STATUS
    and IRQ_STATUS tell done or error (ERR_CAUSE, ERR_PC, ERR_ADDR). PERF_* count from
    start to done. Clock: one domain, ``sync``.
    """

    def __init__(self, cfg=None):
        cfg = Config() if cfg is None else cfg
        if not isinstance(cfg, Config):
            raise TypeError(f"TensorCore cfg must be a hw.config.Config, not {cfg!r}")
        self.cfg = cfg
        super().__init__({
            "m_axi": Out(AXI4Signature(cfg.addr_width, cfg.dma_data_width, cfg.id_width)),
            "s_axil": In(AXI4LiteSignature(regmap.ADDR_WIDTH, 32)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self.cfg
        m.submodules.regs = regs = Registers(cfg)
        m.submodules.controller = ctrl = Controller(cfg)
        dma = Dma(cfg)
        m.submodules.dma = ResetInserter(ctrl.bus_reset)(dma)
        # The watchdog's forced stop resets the DMA mid-transfer; the guard completes the
        # bursts it had started, so the bus never sees a protocol violation. It re-presents
        # an interrupted request from the DMA's reset-less payload, which `pause` keeps.
        m.submodules.bus_guard = guard = AxiGuard(
            addr_width=cfg.addr_width, data_width=cfg.dma_data_width, id_width=cfg.id_width,
            max_outstanding=cfg.max_outstanding)
        m.d.comb += [guard.isolate.eq(ctrl.bus_reset), dma.pause.eq(guard.draining)]

        # The datapath is cleared between programs (after an error or abort).
        def datapath(name, component):
            m.submodules[name] = ResetInserter(ctrl.soft_reset)(component)
            return component

        fetcher = datapath("fetcher", Fetcher(cfg))
        arbiter = datapath("read_arbiter", ReadArbiter(cfg, clients=2))
        load = datapath("load_unit", LoadUnit(cfg))
        exe = datapath("exec_unit", ExecUnit(cfg))
        store = datapath("store_unit", StoreUnit(cfg))
        sp = datapath("scratchpad", Scratchpad(cfg, read_ports=SP_READ_PORTS))
        m.submodules.array = array = SystolicArray(cfg)
        m.d.comb += array.clear.eq(ctrl.soft_reset)
        acc = datapath("accumulator", Accumulator(cfg))

        wiring.connect(m, wiring.flipped(self.s_axil), regs.s_axil)
        wiring.connect(m, dma.m_axi, guard.s_axi)
        wiring.connect(m, guard.m_axi, wiring.flipped(self.m_axi))

        # ---- DMA ----------------------------------------------------------------------------
        connect(m, arbiter.rd_cmd, dma.rd_cmd)
        connect(m, dma.rd_data, arbiter.rd_data)
        connect(m, dma.rd_status, arbiter.rd_status)
        for client, unit in ((arbiter.clients[_FETCH], fetcher), (arbiter.clients[_LOAD], load)):
            connect(m, unit.rd_cmd, client.cmd)
            connect(m, client.data, unit.rd_data)
            connect(m, client.status, unit.rd_status)
        connect(m, store.wr_cmd, dma.wr_cmd)
        connect(m, store.wr_data, dma.wr_data)
        connect(m, dma.wr_status, store.wr_status)
        # DRAM_BASE / DRAM_SIZE hold at most 2**addr_width (WARL, hw.regmap): a base there,
        # beyond the address space, leaves no window.
        aw = cfg.addr_width
        base_beyond = regs.dram_base.addr[aw:].any()
        m.d.comb += [
            dma.window_base.eq(regs.dram_base.addr[:aw]),
            dma.window_size.eq(Mux(base_beyond, 0, regs.dram_size.bytes)),
        ]

        # ---- controller --------------------------------------------------------------------------
        # PROG_COUNT holds pc_width bits, saturated when written (WARL, hw.regmap).
        prog_count = regs.prog_count.count
        m.d.comb += [
            ctrl.start.eq(regs.ctrl.start),
            ctrl.abort.eq(regs.ctrl.abort),
            ctrl.prog_base.eq(regs.prog_base.addr),
            ctrl.prog_count.eq(prog_count),
            fetcher.start.eq(ctrl.fetch_start),
            fetcher.base.eq(regs.prog_base.addr),
            fetcher.count.eq(prog_count),
            fetcher.flush.eq(ctrl.fetch_flush),
            ctrl.fetch_busy.eq(fetcher.busy),
        ]
        connect(m, fetcher.words, ctrl.words)
        for name, unit in (("load", load), ("exec", exe), ("store", store)):
            connect(m, getattr(ctrl, f"{name}_cmd"), unit.cmd)
            connect(m, unit.ctrl, getattr(ctrl, name))

        # ---- datapath ----------------------------------------------------------------------------
        connect(m, load.sp_write, sp.write)
        for port in range(SP_READ_PORTS):
            connect(m, exe.sp_req[port], sp.read_req[port])
            connect(m, sp.read_resp[port], exe.sp_resp[port])
        for name in ("preload", "ws_in", "os_in"):
            if hasattr(exe, name):
                connect(m, getattr(exe, name), getattr(array, name))
        connect(m, array.out, exe.array_out)
        connect(m, load.qparam_write, store.qparam_write)
        connect(m, store.acc_req, acc.read_req)
        connect(m, acc.read_resp, store.acc_resp)
        # Accumulator writes: the array's results first, then rows loaded from DRAM.
        with m.If(exe.acc_write.valid):
            m.d.comb += [acc.write.valid.eq(1), acc.write.payload.eq(exe.acc_write.payload),
                         exe.acc_write.ready.eq(acc.write.ready)]
        with m.Else():
            m.d.comb += [acc.write.valid.eq(load.acc_write.valid),
                         acc.write.payload.eq(load.acc_write.payload),
                         load.acc_write.ready.eq(acc.write.ready)]

        self._status_and_counters(m, regs, ctrl, dma, load, exe, store)
        return m

    def _status_and_counters(self, m, regs, ctrl, dma, load, exe, store):
        cfg = self.cfg
        m.d.comb += [
            regs.status.busy.eq(ctrl.busy),
            regs.status.done.eq(ctrl.done),
            regs.status.error.eq(ctrl.error),
            regs.err_cause.cause.eq(ctrl.err_cause),
            regs.err_pc.index.eq(ctrl.err_pc),
            regs.err_addr.addr.eq(ctrl.err_addr),
            regs.pc.count.eq(ctrl.pc),
            regs.set_port("IRQ_STATUS").done.eq(ctrl.finished & ~ctrl.failed),
            regs.set_port("IRQ_STATUS").error.eq(ctrl.finished & ctrl.failed),
            self.irq.eq((regs.irq_status.as_value() & regs.irq_enable.as_value()) != 0),
            regs.perf_dma_rd_bytes.count.eq(dma.bytes_read),
            regs.perf_dma_wr_bytes.count.eq(dma.bytes_written),
            dma.clear_counters.eq(ctrl.fetch_start),
        ]
        counters = {"perf_cycles": ctrl.busy}
        # perf_counters="basic" (small FPGAs) leaves the others out: they read 0.
        if cfg.perf_counters == "all":
            counters.update({
                "perf_busy_load": load.ctrl.executing,
                "perf_busy_exec": exe.ctrl.executing,
                "perf_busy_store": store.ctrl.executing,
                "perf_stall": exe.stalled,
            })
        for name, event in counters.items():
            count = Signal(32, name=name)
            with m.If(ctrl.fetch_start):
                m.d.sync += count.eq(0)
            with m.Elif(event):
                m.d.sync += count.eq(count + 1)
            m.d.comb += getattr(regs, name).count.eq(count)
        if cfg.perf_counters == "all":
            macs = Signal(64)
            with m.If(ctrl.fetch_start):
                m.d.sync += macs.eq(0)
            with m.Elif(exe.mac_beats):
                m.d.sync += macs.eq(macs + cfg.rows * cfg.cols)
            m.d.comb += [regs.perf_macs_lo.count.eq(macs[:32]),
                         regs.perf_macs_hi.count.eq(macs[32:])]

        # Watchdog: no bus handshake and no dispatch for WATCHDOG cycles while busy.
        axi = self.m_axi
        progress = ((axi.arvalid & axi.arready) | (axi.rvalid & axi.rready)
                    | (axi.awvalid & axi.awready) | (axi.wvalid & axi.wready)
                    | (axi.bvalid & axi.bready) | ctrl.words.ready
                    | exe.mac_beats | store.acc_req.ready & store.acc_req.valid)
        limit = regs.watchdog.cycles
        idle_for = Signal(32)
        with m.If(~ctrl.busy | progress):
            m.d.sync += idle_for.eq(0)
        with m.Elif(idle_for != limit):
            m.d.sync += idle_for.eq(idle_for + 1)
        m.d.comb += ctrl.watchdog_expired.eq((limit != 0) & (idle_for == limit))
