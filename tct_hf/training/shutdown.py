"""A clean end for multi-process training runs."""

from __future__ import annotations

import gc


def end_training(trainer) -> None:
    """Wait for every process, release the DDP wrapper, then destroy the process group.

    Destroying a gloo process group while a DDP reducer still holds it can hang the interpreter at exit; freeing the
    wrapper first avoids it (the runs are counted in benchmarks/RESULTS.md). Call it last in a script.
    The trainer is unusable afterwards (its unwrapped model, e.g. `student`, stays valid).
    """
    accelerator = trainer.accelerator
    accelerator.wait_for_everyone()
    trainer.model_wrapped = trainer.model = None
    accelerator.free_memory()
    gc.collect()
    accelerator.end_training()
