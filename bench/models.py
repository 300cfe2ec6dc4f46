"""Analytic performance models the measurements are compared with.

- SCALE-Sim's compute-only cycle counts for one GEMM ``(M x K) @ (K x N)`` on an ``R x C``
  array (no memory stalls): weight-stationary ``ceil(K/R) * ceil(N/C) * (2R + C + M - 2)``
  (fill R weight rows, then stream M rows through R + C - 1 pipeline stages per fold),
  output-stationary ``ceil(M/R) * ceil(N/C) * (R + C + K - 2)``.
- The roofline: attainable MACs per cycle ``min(peak, intensity * bandwidth)``, where the
  arithmetic intensity is MACs per DMA byte and the bandwidth is the AXI bus bytes per cycle.
- The DMA bound of a memory-bound layer: ``total_dma_bytes / bus_bytes`` cycles, and the
  achieved fraction of it ``bound_cycles / cycles``.
"""

import math


__all__ = ["DATAFLOWS", "scalesim_cycles", "scalesim_cycles_layers", "utilization",
           "arithmetic_intensity", "roofline_macs_per_cycle", "roofline_cycles",
           "dma_bound_cycles", "dma_fraction"]

DATAFLOWS = ("ws", "os")


def _check_positive(**values):
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")


def scalesim_cycles(dataflow, M, K, N, rows, cols):
    """SCALE-Sim's analytic cycles of ``(M x K) @ (K x N)`` on a ``rows x cols`` array."""
    _check_positive(M=M, K=K, N=N, rows=rows, cols=cols)
    if dataflow == "ws":
        return math.ceil(K / rows) * math.ceil(N / cols) * (2 * rows + cols + M - 2)
    if dataflow == "os":
        return math.ceil(M / rows) * math.ceil(N / cols) * (rows + cols + K - 2)
    raise ValueError(f"dataflow must be one of {DATAFLOWS}, not {dataflow!r}")


def scalesim_cycles_layers(dataflow, gemms, rows, cols):
    """Sum of :func:`scalesim_cycles` over layers run one after the other (``(M, K, N)`` each)."""
    return sum(scalesim_cycles(dataflow, M, K, N, rows, cols) for M, K, N in gemms)


def utilization(macs, rows, cols, cycles):
    """Fraction of the array's peak ``rows * cols`` MACs per cycle achieved over ``cycles``."""
    if not cycles:
        return None
    return macs / (rows * cols) / cycles


def arithmetic_intensity(macs, dma_bytes):
    """MACs per byte moved by the DMA (reads + writes)."""
    if not dma_bytes:
        return None
    return macs / dma_bytes


def roofline_macs_per_cycle(intensity, peak_macs_per_cycle, bus_bytes_per_cycle):
    """The roof: ``min(peak, intensity * bandwidth)`` MACs per cycle."""
    return min(peak_macs_per_cycle, intensity * bus_bytes_per_cycle)


def roofline_cycles(macs, dma_bytes, peak_macs_per_cycle, bus_bytes_per_cycle):
    """Fewest cycles the roofline allows: compute and transfer fully overlapped."""
    return max(macs / peak_macs_per_cycle, dma_bytes / bus_bytes_per_cycle)


def dma_bound_cycles(dma_bytes, bus_bytes_per_cycle):
    """Cycles the DMA needs to move ``dma_bytes`` at one full bus beat per cycle."""
    return dma_bytes / bus_bytes_per_cycle


def dma_fraction(dma_bytes, bus_bytes_per_cycle, cycles):
    """Achieved fraction of the DMA bandwidth bound: ``bound_cycles / cycles``."""
    if not cycles:
        return None
    return dma_bound_cycles(dma_bytes, bus_bytes_per_cycle) / cycles
