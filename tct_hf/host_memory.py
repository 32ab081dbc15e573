"""Keep freed host memory for the next step instead of handing it back to the kernel (CPU training and encoding).

PyTorch takes every CPU tensor from ``malloc``. glibc serves a block above its mmap threshold (at most 32 MiB) with
a fresh ``mmap`` and returns it with ``munmap`` as soon as it is freed, so the kernel zero-fills every page of it
again on first touch in the next step. A training step allocates and frees many such blocks (one layer's attention
probabilities at the paper's batch size are hundreds of megabytes); benchmarks/RESULTS.md has the measurements.

`keep_freed_host_memory` sets glibc's ``M_MMAP_MAX = 0`` (large blocks come from the heap too) and
``M_TRIM_THRESHOLD = -1`` (freed heap memory is kept, not trimmed): from the second step on, the step's memory is
reused. The cost is resident memory: the process keeps its peak. The settings are process-wide and stay for the
process's life. Elsewhere than glibc Linux (musl, macOS, Windows) nothing changes and the function says so by
returning False. jemalloc or tcmalloc through ``LD_PRELOAD`` (PyTorch's CPU tuning guide) have the same effect, and
the environment variables ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=-1`` set the same two values before a process
starts.

Callers: `TCTTrainer` and `ColBERTTrainer` when they train on the CPU (unless ``keep_freed_host_memory=False``), and
`tct_hf.retrieval.encode_index` / the `tct-hf` commands that load a model on the CPU. This module sits at the top of
the package so that training and retrieval can both use it without importing each other.

Example:
    >>> keep_freed_host_memory()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import ctypes
import sys

from transformers.utils import logging

logger = logging.get_logger(__name__)

# glibc's <malloc.h> parameter numbers.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def keep_freed_host_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from the heap and never trim it. True when glibc accepted both
    settings; False, with nothing changed, where the C library is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as error:  # musl and other C libraries: no glibc mallopt to call
        logger.info(f"keep_freed_host_memory: no glibc mallopt ({error}); the allocator is left as it is")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    accepted = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, -1) == 1
    if accepted:
        logger.info("keep_freed_host_memory: glibc malloc keeps freed memory (M_MMAP_MAX=0, M_TRIM_THRESHOLD=-1)")
    return accepted
