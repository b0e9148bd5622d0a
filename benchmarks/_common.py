"""Small helpers shared by the benchmark scripts: medians of repeated timings, markdown tables."""
from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from typing import Any, Callable, Sequence


def per_call(fn: Callable[[], Any], repeats: int = 3, min_time: float = 0.0) -> tuple[float, Any]:
    """Median over ``repeats`` of the seconds per call of ``fn``.

    Each repeat calls ``fn`` until ``min_time`` seconds have passed (at least once) and divides
    the elapsed time by the number of calls, so fast operations are timed over many calls.
    Returns (median seconds per call, the last result).
    """
    times, out = [], None
    for _ in range(max(1, int(repeats))):
        gc.collect()
        n, t0 = 0, time.perf_counter()
        while True:
            out = fn()
            n += 1
            el = time.perf_counter() - t0
            if el >= min_time:
                break
        times.append(el / n)
    return statistics.median(times), out


def once(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of one call."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def machine() -> str:
    import numpy as np
    import scipy

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
            f"(1-min load {load:.1f} at start), Python {platform.python_version()}, "
            f"numpy {np.__version__}, scipy {scipy.__version__}")


class Report:
    """Collects markdown tables (printed as they are made) for an optional output file."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def text(self, s: str = "") -> None:
        print(s, flush=True)
        self.lines.append(s)

    def table(self, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]],
              note: str | None = None) -> None:
        self.text(f"\n### {title}\n")
        self.text("| " + " | ".join(header) + " |")
        self.text("|" + "---|" * len(header))
        for r in rows:
            self.text("| " + " | ".join(str(x) for x in r) + " |")
        if note:
            self.text("\n" + note)

    def write(self, path: str) -> None:
        with open(path, "w") as fh:
            fh.write("\n".join(self.lines) + "\n")


def fmt_s(t: float) -> str:
    """Seconds with three significant digits, in s / ms / µs."""
    if t != t:
        return "n/a"
    if t >= 1.0:
        return f"{t:.3g} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3g} ms"
    return f"{t * 1e6:.3g} µs"


def fmt_rate(x: float) -> str:
    """A rate (per second) in engineering notation."""
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= f:
            return f"{x / f:.3g}{unit}/s"
    return f"{x:.3g}/s"


def fmt_ratio(x: float) -> str:
    if x != x:
        return "n/a"
    return f"{x:.3g}×"
