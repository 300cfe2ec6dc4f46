"""cocotb side of the RTL runtime backends (:mod:`sim.backends`): run one job directory.

``TC_JOB`` names a directory holding ``image.bin`` (the DRAM image) and ``job.json``
(dram_base, prog_base, prog_count, window, backpressure, seed, timeout_cycles). The DRAM
contents after the run go to ``dram.bin``, the cycle count, perf counters and error to
``result.json``; ``progress.txt`` grows while it runs.
"""

import json
import os
from pathlib import Path

import cocotb

from sim.tb.harness import run_program


@cocotb.test()
async def run_job(dut):
    job_dir = Path(os.environ["TC_JOB"])
    job = json.loads((job_dir / "job.json").read_text())
    image = (job_dir / "image.bin").read_bytes()
    result = await run_program(
        dut, image, job["dram_base"], job["prog_base"], job["prog_count"],
        window=tuple(job["window"]), backpressure=job["backpressure"], seed=job["seed"],
        timeout_cycles=job["timeout_cycles"], progress_path=job_dir / "progress.txt")
    (job_dir / "dram.bin").write_bytes(result["dram"])
    (job_dir / "result.json").write_text(json.dumps({
        "cycles": result["cycles"], "counters": result["counters"], "error": result["error"],
    }))
