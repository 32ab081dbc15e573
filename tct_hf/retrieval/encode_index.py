"""Encode a corpus into a saved faiss index: one process, one ``--shard`` of it, or every process of an
``accelerate launch`` / ``torchrun`` job (each encodes its shard, rank 0 merges them).

This is what ``tct-hf encode`` and ``tct-hf merge-index`` run; it is callable from Python the same way::

    from tct_hf.retrieval import encode_index, merge_shards

    encode_index("my-student", "collection.tsv", "index/")                  # one process
    encode_index("my-student", "collection.tsv", "index/", shard=(0, 4))    # writes index/shard-0-of-4
    merge_shards("index/")                                                  # joins index/shard-*-of-N into index/

Under ``accelerate launch script.py`` (several processes) `encode_index` takes shard
``(process_index, num_processes)`` by itself: every process writes ``OUTPUT/shard-I-of-N``, then, after a barrier,
rank 0 merges them into ``OUTPUT``. Call `release_process_group` when the process is done with distributed work
(a gloo group left open can abort the interpreter at exit).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tct_hf.outputs import OutputExistsError, check_output

from .encode import encode_corpus, find_shard_directories, load_corpus, shard_directory
from .fingerprint import encoder_fingerprint
from .index import (
    DOCIDS_FILE,
    INDEX_FILE,
    INDEX_OUTPUT,
    METADATA_FILE,
    DenseIndex,
    build_index,
    merge_index_shards,
    save_index,
)

__all__ = ["EncodedIndex", "distributed_state", "encode_index", "merge_shards", "release_process_group"]


@dataclass
class EncodedIndex:
    """What `encode_index` wrote: ``index`` at ``path`` (this process's shard, or the whole corpus), the encoding
    time, and on rank 0 of a distributed run the ``merged`` index at ``merged_path``."""

    index: DenseIndex
    path: Path
    seconds: float
    shard: tuple[int, int] | None = None
    merged: DenseIndex | None = None
    merged_path: Path | None = None


def distributed_state() -> Any | None:
    """accelerate's `PartialState` when this process is one of several (accelerate launch / torchrun), else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # Without cpu=True, a machine with no GPU would give every process the whole corpus (DistributedType.NO).
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())
    if state.num_processes <= 1:
        raise RuntimeError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} but accelerate started a single process group of 1; "
            "launch with `accelerate launch --multi_gpu --num_processes N` (ACCELERATE_USE_CPU=true on CPU)"
        )
    return state


def release_process_group() -> None:
    """Destroy the default process group if one is open (a clean end of a distributed run)."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def encode_index(
    model: Any,
    corpus: Any,
    output_dir: str | Path,
    *,
    shard: tuple[int, int] | None = None,
    index_type: str = "flat",
    batch_size: int = 64,
    max_length: int | None = None,
    skip_empty: bool = False,
    overwrite: bool = False,
    show_progress_bar: bool = True,
    encoder_type: str = "auto",
    dtype: Any = None,
    device: Any = None,
    keep_freed_host_memory: bool = False,
    segment_window: int | None = None,
    segment_stride: int | None = None,
) -> EncodedIndex:
    """Encode ``corpus`` with ``model`` and save the faiss index at ``output_dir`` (see the module docstring).

    Args:
        model: a model directory or Hub id (loaded with `load_encoder` on this process's device, with
            ``encoder_type``, ``dtype`` = the weights' dtype, and ``device``), or an encoder already loaded.
        corpus: a collection file or a `datasets.Dataset` (``id``, ``text``, optional ``title``).
        output_dir: the index folder; with ``shard=(i, n)`` the shard goes to ``output_dir/shard-i-of-n``.
        shard: encode only the contiguous slice i of n. Under a distributed launch it is set from the process
            index and passing it is an error.
        index_type: ``flat``, ``fp16`` or ``hnsw`` (`build_index`).
        overwrite: replace an existing index (otherwise a non-empty ``output_dir`` raises
            `tct_hf.outputs.OutputExistsError`, a `FileExistsError`, before any encoding); a folder holding anything
            but an index's files is refused even with ``overwrite``.
        keep_freed_host_memory: on the CPU, keep freed host memory for the next batch (`tct_hf.host_memory`).
        batch_size, max_length, skip_empty, show_progress_bar: as in `encode_corpus`.
        segment_window, segment_stride: index documents as overlapping segments (MaxP), as in `encode_corpus`;
            the index then records ``extra["segments"]`` and `search` returns distinct documents.
    """
    state = distributed_state()
    if state is not None and shard is not None:
        raise ValueError("shard is set by the launcher under accelerate launch / torchrun; do not pass it")
    if state is not None:
        shard = (state.process_index, state.num_processes)
    output = Path(output_dir)
    target = shard_directory(output, *shard) if shard is not None else output
    # Refused before any encoding: a non-empty output needs overwrite, and is replaced only if it is an index.
    check_output(output if state is not None else target, INDEX_OUTPUT, overwrite)
    if state is not None:
        state.wait_for_everyone()  # every rank checks before any rank writes its shard

    load_corpus(corpus, skip_empty=skip_empty)  # malformed lines fail before the model loads (cached)
    encoder = _encoder(model, encoder_type, dtype, state.device if state is not None else device)
    if keep_freed_host_memory and str(getattr(encoder, "device", "cpu")).startswith("cpu"):
        from tct_hf.host_memory import keep_freed_host_memory as keep

        keep()
    started = time.perf_counter()
    embeddings, docids = encode_corpus(
        encoder,
        corpus,
        batch_size=batch_size,
        max_length=max_length,
        shard=shard,
        show_progress_bar=show_progress_bar,
        skip_empty=skip_empty,
        segment_window=segment_window,
        segment_stride=segment_stride,
    )
    seconds = time.perf_counter() - started
    extra = {"shard": list(shard)} if shard is not None else {}
    model_name = str(model) if isinstance(model, (str, Path)) else getattr(encoder, "name_or_path", None)
    index = build_index(
        embeddings,
        docids,
        kind=index_type,
        model_name=model_name,
        extra=extra,
        model_fingerprint=encoder_fingerprint(encoder),
    )
    save_index(index, target, overwrite=overwrite)
    result = EncodedIndex(index=index, path=target, seconds=seconds, shard=shard)
    if state is not None:
        state.wait_for_everyone()
        if state.is_main_process:
            result.merged = merge_shards(output, overwrite=overwrite)
            result.merged_path = output
        state.wait_for_everyone()
    return result


def merge_shards(index_dir: str | Path, overwrite: bool = False) -> DenseIndex:
    """Merge the ``shard-I-of-N`` folders under ``index_dir`` into one index saved at ``index_dir`` itself (the
    folder is replaced, shards included). Errors: no such folder or no shard folder (`FileNotFoundError`), shards
    that do not cover 0..N-1 once or disagree in dim, kind or model (`ValueError`, from `merge_index_shards`), a
    folder that already holds a merged index without ``overwrite``, or that holds anything besides an index's files
    and shard folders, even with ``overwrite`` (`tct_hf.outputs.OutputExistsError`: the user's files are never
    deleted)."""
    shards = find_shard_directories(index_dir)
    merged_files = [name for name in (INDEX_FILE, DOCIDS_FILE, METADATA_FILE) if (Path(index_dir) / name).exists()]
    if merged_files and not overwrite:
        raise OutputExistsError(
            f"{index_dir} already holds a merged index ({', '.join(merged_files)}). Fix: pass --overwrite "
            "(overwrite=True) to replace it with a new merge of its shards."
        )
    check_output(index_dir, INDEX_OUTPUT, overwrite=True)  # before the shards load: nothing but index files there
    return merge_index_shards(shards, index_dir, overwrite=True)


def _encoder(model: Any, encoder_type: str, dtype: Any, device: Any) -> Any:
    if not isinstance(model, (str, Path)):
        return model
    from .encoders import load_encoder

    return load_encoder(str(model), device=device, dtype=dtype, encoder_type=encoder_type)
