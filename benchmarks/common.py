"""Shared helpers of the benchmark scripts: interleaved timing, medians, peak memory, device description, JSON out.

Conventions every benchmark follows (so numbers survive a shared, noisy machine):

- every variant is warmed up first (``warmup`` untimed calls each), then timed in interleaved rounds, the order
  reversed every other round (A B C, C B A, A B C ...), so slow drifts of the machine (another job starting, CPU
  frequency) hit every variant alike;
- each variant's statistic is the MEDIAN of its repetitions; results are reported as ratios against a baseline
  measured in the same run, never as absolute numbers compared across runs;
- exactly one JSON object goes to stdout (``emit_json``); logs go to stderr (``log``).

Example:
    >>> timings = interleaved_timings({"a": lambda: sum(range(100)), "b": lambda: sum(range(200))}, repeats=3)
    >>> sorted(timings), len(timings["a"])
    (['a', 'b'], 3)
    >>> median_seconds([3.0, 1.0, 2.0])
    2.0
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "add_common_arguments",
    "device_description",
    "emit_json",
    "interleaved_timings",
    "log",
    "measure_peak_memory",
    "median_seconds",
    "resolve_device",
    "summarize",
    "synchronize",
]


def log(message: str) -> None:
    """One line to stderr (stdout is reserved for the JSON result)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit_json(result: Mapping[str, Any]) -> None:
    """Print the benchmark's single JSON object to stdout."""
    print(json.dumps(result, indent=2, sort_keys=False, default=_json_default), flush=True)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def add_common_arguments(parser: argparse.ArgumentParser, repeats: int = 7, warmup: int = 1) -> None:
    """``--device``, ``--quick``, ``--repeats``, ``--warmup``, ``--threads``, ``--seed``."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available).")
    parser.add_argument("--quick", action="store_true", help="Small sizes for CI-class machines.")
    parser.add_argument("--repeats", type=int, default=repeats, help="Timed repetitions per variant (median).")
    parser.add_argument("--warmup", type=int, default=warmup, help="Untimed calls per variant before timing.")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of every random draw.")


def resolve_device(name: str):
    """``auto`` -> ``cuda`` when available else ``cpu``; a CUDA device without CUDA raises ``SystemExit``."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine. Fix: use --device cpu.")
    return device


def synchronize(device) -> None:
    """Wait for queued GPU work, so a timer measures it (no-op on CPU)."""
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)


def interleaved_timings(
    variants: Mapping[str, Callable[[], Any]], repeats: int = 7, warmup: int = 1, device=None, clock: str = "wall"
) -> dict[str, list[float]]:
    """Seconds of each call of each variant, timed in interleaved rounds (order reversed every other round).

    Args:
        variants: name -> zero-argument callable doing one unit of work (e.g. one optimizer step).
        repeats: timed calls per variant.
        warmup: untimed calls per variant first (allocators, autotuning, caches).
        device: synchronised before and after each call when it is a CUDA device.
        clock: ``"wall"`` (``time.perf_counter``) or ``"process"`` (``time.process_time``: CPU seconds of this
            process, all threads). On a CPU shared with other jobs, process time with ONE torch thread measures the
            work itself, not the waiting for a core; with several threads it also counts OpenMP spin-waiting.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if clock not in ("wall", "process"):
        raise ValueError(f"clock must be 'wall' or 'process', got {clock!r}")
    timer = time.perf_counter if clock == "wall" else time.process_time
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    if device is not None:
        synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            if device is not None:
                synchronize(device)
            start = timer()
            variants[name]()
            if device is not None:
                synchronize(device)
            times[name].append(timer() - start)
    return times


def median_seconds(times: list[float]) -> float:
    """Median of the repetitions (robust to a round disturbed by another process)."""
    return float(statistics.median(times))


def summarize(times: list[float]) -> dict[str, float]:
    """Median, min, max and the spread (max - min) / median of one variant's repetitions."""
    median = median_seconds(times)
    return {
        "median_s": median,
        "min_s": float(min(times)),
        "max_s": float(max(times)),
        "relative_spread": float((max(times) - min(times)) / median) if median > 0 else 0.0,
        "repeats": len(times),
    }


def measure_peak_memory(function: Callable[[], Any], device) -> dict[str, float | str]:
    """Peak memory of one call of ``function``.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (bytes held by tensors, peak).
    CPU: the process's resident set size sampled every millisecond by a thread during the call, minus the RSS
    before it (``rss_peak_increase``: what the call added on top of what was already resident; torch's CPU allocator
    is invisible to ``tracemalloc``, so RSS is the honest measure). Returns MiB.
    """
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        function()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {
            "kind": "cuda_max_memory_allocated",
            "peak_mib": peak / 2**20,
            "peak_increase_mib": (peak - before) / 2**20,
        }
    import psutil

    process = psutil.Process(os.getpid())
    before = process.memory_info().rss
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        function()
    finally:
        done.set()
        sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    return {"kind": "rss_peak_increase", "peak_mib": peak[0] / 2**20, "peak_increase_mib": (peak[0] - before) / 2**20}


def cpu_model() -> str:
    """The CPU's model name (``lscpu``, else ``platform.processor()``)."""
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in output.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def device_description(device) -> dict[str, Any]:
    """What ran the benchmark: CPU model and cores, torch threads, GPU name, library versions, date."""
    import torch

    description: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(device),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_bf16": sorted(flag for flag in cpu_flags() if "bf16" in flag or flag.startswith("amx")),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if getattr(device, "type", str(device)).startswith("cuda"):
        description["gpu"] = torch.cuda.get_device_name(device)
        description["cuda"] = torch.version.cuda
        description["gpu_bf16"] = bool(torch.cuda.is_bf16_supported())
    for module in ("transformers", "sentence_transformers", "faiss", "numpy"):
        try:
            description[module] = __import__(module).__version__
        except ImportError:
            description[module] = None
    try:
        load = os.getloadavg()
        description["load_average_1m"] = round(load[0], 2)
    except OSError:
        pass
    return description


def setup_torch(args: argparse.Namespace):
    """Apply ``--threads`` and ``--seed``; return the resolved device."""
    import torch

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return resolve_device(args.device)
