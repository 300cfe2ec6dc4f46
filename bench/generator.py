"""Generator scale: wall time and peak memory of ``python -m hw verilog`` for N x N arrays.

Each size runs in a fresh child interpreter (``python -m bench.generator --child ...``)
that starts the generator and reads ``resource.getrusage(RUSAGE_CHILDREN)`` afterwards:
the child has no other children, so its peak RSS is exactly the generator's (the bench
process itself has run simulators whose peak would otherwise mask smaller generators).

Memories grow with the array: the accumulator needs ``2 * rows`` rows of ``cols`` int32 and
each scratchpad bank at least ``max(rows, cols)`` rows, so :func:`scaled_config` raises
``accumulator_kib`` / ``scratchpad_kib`` above the defaults where the size needs it.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from hw.config import Config


__all__ = ["DEFAULT_SIZES", "scaled_config", "generator_command", "measure", "measure_sizes"]

DEFAULT_SIZES = (16, 32, 64, 128, 256)
REPO_ROOT = Path(__file__).resolve().parent.parent
_KIB = 1024
_ACC_ELEM_BYTES = 4


def _pow2_at_least(value):
    return 1 << max(0, (value - 1).bit_length())


def scaled_config(n, base=None):
    """``base`` (default Config) as an ``n x n`` array with memories just big enough for it."""
    base = base or Config()
    acc_kib = 2 * n * n * _ACC_ELEM_BYTES // _KIB
    sp_kib = base.scratchpad_banks * n * n // _KIB
    return base.replace(rows=n, cols=n,
                        accumulator_kib=max(base.accumulator_kib, _pow2_at_least(max(acc_kib, 1))),
                        scratchpad_kib=max(base.scratchpad_kib, _pow2_at_least(max(sp_kib, 1))))


def generator_command(cfg, out_dir):
    """The ``python -m hw verilog`` command line that emits ``cfg`` into ``out_dir``."""
    default = Config()
    cmd = [sys.executable, "-m", "hw", "verilog", "--out", str(out_dir)]
    for name, *_ in Config.knobs():
        value = getattr(cfg, name)
        # output_lanes = cols is what the default (0) gives at any size.
        if name == "output_lanes" and value == cfg.cols:
            continue
        if name in ("rows", "cols") or value != getattr(default, name):
            cmd += ["--" + name.replace("_", "-"), str(value)]
    return cmd


def _child(cmd, timeout):
    """Runs in the fresh interpreter: one generator run, result as JSON on stdout."""
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(status="timeout", reason=f"no result within {timeout} s",
                    seconds=round(time.monotonic() - start, 2))
    seconds = time.monotonic() - start
    # ru_maxrss is in KiB on Linux.
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / _KIB
    result = dict(seconds=round(seconds, 2), peak_rss_mib=round(peak_mib, 1))
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return dict(result, status="error", reason=f"exit code {proc.returncode}: {tail}")
    return dict(result, status="ok")


def measure(n, out_root, timeout=None, base=None):
    """Emit the ``n x n`` design into ``out_root/<n>x<n>``; returns a result dict."""
    cfg = scaled_config(n, base)
    out_dir = Path(out_root) / f"{n}x{n}"
    cmd = generator_command(cfg, out_dir)
    child = [sys.executable, "-m", "bench.generator", "--child",
             "--timeout", str(timeout or 0), "--", *cmd]
    proc = subprocess.run(child, cwd=REPO_ROOT, capture_output=True, text=True)
    row = dict(size=n, accumulator_kib=cfg.accumulator_kib, scratchpad_kib=cfg.scratchpad_kib,
               command=" ".join(["python"] + cmd[1:]))
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return dict(row, status="error", reason=f"measurement failed: {tail}",
                    seconds=None, peak_rss_mib=None)
    result = json.loads(proc.stdout)
    verilog = out_dir / "tensor_core.v"
    if result["status"] == "ok" and verilog.exists():
        result["verilog_mib"] = round(verilog.stat().st_size / _KIB / _KIB, 2)
    return dict(row, **result)


def measure_sizes(sizes, out_root, timeout=None, base=None, log=print):
    """:func:`measure` for each size, logging progress; returns the list of results."""
    results = []
    for index, n in enumerate(sizes, 1):
        log(f"[gen {index}/{len(sizes)}] python -m hw verilog --rows {n} --cols {n} ...")
        result = measure(n, out_root, timeout, base)
        results.append(result)
        if result["status"] == "ok":
            log(f"    {result['seconds']:.1f} s, peak {result['peak_rss_mib']:.0f} MiB")
        else:
            log(f"    {result['status']}: {result['reason']}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.generator",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=0, help="seconds per size (0: none)")
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--out", default=str(REPO_ROOT / "build" / "bench" / "gen"))
    parser.add_argument("cmd", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.cmd, args.timeout or None)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results = measure_sizes(sizes, args.out, args.timeout or None)
    print(json.dumps(results, indent=2))
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
