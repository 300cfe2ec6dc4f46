"""RTL-simulation backends of the runtime: the emitted ``tensor_core.v`` under cocotb.

``verilator`` (default) and ``icarus`` run the same DRAM image as the golden backend through
the real top level: cocotbext-axi's ``AxiRam`` is the DRAM on ``m_axi`` and an
``AxiLiteMaster`` drives ``s_axil`` (see :mod:`sim.tb.harness`). Cycles come from the
hardware's PERF_CYCLES counter.

The host side and the simulator talk through a job directory: ``image.bin`` + ``job.json``
in, ``dram.bin`` + ``result.json`` out, ``progress.txt`` appended while it runs (shown on
stderr for long simulations). The Verilog and the simulator build are cached per Config
and per gateware source, so only the first run of a configuration compiles.

Backend names: ``verilator``, ``icarus``, with an optional ``:bp`` suffix that turns on
random AXI backpressure (``verilator:bp``).
"""

import hashlib
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path

from sw.runtime import Backend, RunResult, register_backend

from .runner import REPO_ROOT, SIM_BUILD_ROOT, run_cocotb


__all__ = ["RtlBackend", "design_key", "ensure_verilog"]

_job_ids = itertools.count()


def design_key(cfg):
    """A short hash of the Config and of every gateware source file it is built from."""
    digest = hashlib.sha256(cfg.to_json().encode())
    for path in sorted((REPO_ROOT / "hw").glob("*.py")) + [REPO_ROOT / "sw" / "isa.py"]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def ensure_verilog(cfg):
    """Emit ``tensor_core.v`` for ``cfg`` once; returns ``(path, key)``."""
    from hw.cli import emit_verilog

    key = design_key(cfg)
    out_dir = SIM_BUILD_ROOT / f"tensor_core_{key}"
    verilog_path = out_dir / "tensor_core.v"
    if not verilog_path.exists():
        # Emitted beside it and renamed, so a concurrent run never reads half a file.
        scratch = SIM_BUILD_ROOT / f"tensor_core_{key}.{os.getpid()}"
        emit_verilog(cfg, scratch)
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tensor_core.v"):
            os.replace(scratch / name, out_dir / name)
        scratch.rmdir()
    return verilog_path, key


class _Progress(threading.Thread):
    """Copies the simulation's progress file to stderr while it runs."""

    def __init__(self, path, enabled):
        super().__init__(daemon=True)
        self.path, self.enabled, self.stop = path, enabled, threading.Event()

    def run(self):
        offset = 0
        while not self.stop.wait(1.0):
            if not self.enabled or not self.path.exists():
                continue
            with open(self.path) as f:
                f.seek(offset)
                text = f.read()
                offset = f.tell()
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()


class RtlBackend(Backend):
    """Runs programs on the emitted Verilog in cocotb (Verilator or Icarus).

    ``backpressure`` adds random stalls on all five AXI channels; ``timeout_cycles`` bounds a
    run (the testbench then reports the last PC and status instead of waiting forever).
    """

    def __init__(self, cfg, simulator="verilator", backpressure=False, seed=None,
                 timeout_cycles=None, progress=None, quiet=True):
        super().__init__(cfg)
        self.simulator = simulator
        self.name = simulator + (":bp" if backpressure else "")
        self.backpressure = backpressure
        self.seed = seed
        self.timeout_cycles = timeout_cycles
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.quiet = quiet

    def run(self, image, dram_base, prog_base, prog_count, window=None):
        verilog_path, key = ensure_verilog(self.cfg)
        job_dir = SIM_BUILD_ROOT / "jobs" / f"{os.getpid()}-{next(_job_ids)}"
        job_dir.mkdir(parents=True, exist_ok=True)
        (job_dir / "image.bin").write_bytes(bytes(image))
        window = window or (self.cfg.dram_base, self.cfg.dram_size)
        job = {
            "dram_base": dram_base, "prog_base": prog_base, "prog_count": prog_count,
            "window": list(window), "backpressure": self.backpressure, "seed": self.seed,
            "timeout_cycles": self.timeout_cycles,
        }
        (job_dir / "job.json").write_text(json.dumps(job))
        progress = _Progress(job_dir / "progress.txt", self.progress)
        log_file = job_dir / "sim.log" if self.quiet else None
        progress.start()
        start = time.monotonic()
        try:
            run_cocotb(verilog_sources=[verilog_path], toplevel="tensor_core",
                       test_module="sim.tb.tb_run", build_name=f"tensor_core_{key}",
                       simulator=self.simulator, extra_env={"TC_JOB": str(job_dir)},
                       testcase="run_job", log_file=log_file)
        except (AssertionError, RuntimeError, SystemExit) as e:
            raise RuntimeError(self._failure_message(job_dir, log_file, e)) from None
        finally:
            progress.stop.set()
            progress.join()
        result = json.loads((job_dir / "result.json").read_text())
        dram = (job_dir / "dram.bin").read_bytes()
        counters = dict(result["counters"], wall_seconds=round(time.monotonic() - start, 2))
        error = tuple(result["error"]) if result["error"] is not None else None
        return RunResult(dram, result["cycles"], counters, error)

    def _failure_message(self, job_dir, log_file, exc):
        tail = ""
        if log_file is not None and log_file.exists():
            lines = log_file.read_text(errors="replace").splitlines()
            tail = "\n".join(lines[-15:])
        return (f"{self.simulator} simulation failed ({exc}); job files in {job_dir}"
                + (f"\n{tail}" if tail else ""))


def _factory(simulator):
    def make(cfg, arg=None):
        if arg not in (None, "", "bp"):
            raise ValueError(f"backend {simulator}:{arg}: the only option is ':bp' (backpressure)")
        return RtlBackend(cfg, simulator=simulator, backpressure=arg == "bp")
    return make


register_backend("verilator", _factory("verilator"))
register_backend("icarus", _factory("icarus"))
