"""The frozen ColBERT teacher of `tct_hf.st` losses: the batch's texts → MaxSim scores against the (global) batch.

The teacher reads the exact texts of the batch with its own tokenizer and conventions (never a decode of the
student's token ids, which would lose casing, accents and whatever the student's tokenizer cannot spell). Two kinds
of teacher are accepted:

- a tct_hf `ColBERTModel` (our checkpoints, Stanford ColBERT, sentence-transformers multi-vector or PyLate
  directories): tokenized by `tokenize_queries` / `tokenize_passages`, encoded and scored by the trainer's
  own `in_batch_teacher_scores` (``teacher_autocast_dtype`` autocast, float32 projection, streamed under chunks);
- a sentence-transformers `MultiVectorEncoder` (its ColBERT): encoded by its own `encode_query` /
  `encode_document` (its prompts, query expansion, skiplist and normalisation), scored by plain MaxSim (its
  ``similarity_fn_name`` must be ``"maxsim"``).

Scores are MaxSim in float32 of the local queries against every passage of the batch: with gathering, the other
processes' passage token embeddings arrive padded to the longest, in the column order of the student's gathered
score matrix (`tct_hf.losses.global_batch`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from ..modeling_colbert import ColBERTModel
from ..training.teacher import (
    DTYPES,
    TeacherTokens,
    freeze,
    in_batch_teacher_scores,
    in_batch_token_scores,
    teacher_autocast,
    teacher_token_embeddings,
)

__all__ = ["check_teacher", "teacher_scores", "teacher_tokens"]


def _is_multi_vector_encoder(teacher: Any) -> bool:
    from sentence_transformers import MultiVectorEncoder

    return isinstance(teacher, MultiVectorEncoder)


def check_teacher(teacher: Any, teacher_autocast_dtype: str) -> torch.nn.Module:
    """The teacher frozen (eval mode, no gradients); a clear error naming ``teacher`` when it is not a ColBERT."""
    if isinstance(teacher, ColBERTModel):
        if teacher.tokenizer is None:
            raise ValueError(
                "check_teacher: the teacher ColBERTModel has no tokenizer (it scores the batch's texts with its own): "
                "load it with ColBERTModel.from_pretrained(dir) or set teacher.tokenizer = AutoTokenizer...(...)."
            )
    elif _is_multi_vector_encoder(teacher):
        if teacher.similarity_fn_name != "maxsim":
            raise ValueError(
                f"check_teacher: teacher is a MultiVectorEncoder scored by {teacher.similarity_fn_name!r}; in-batch "
                "KD "
                "distils ColBERT's MaxSim: set teacher.similarity_fn_name = 'maxsim'."
            )
    else:
        raise TypeError(
            f"check_teacher: teacher must be a ColBERT late-interaction model (tct_hf.ColBERTModel or "
            f"sentence_transformers.MultiVectorEncoder), got {type(teacher).__name__}. Load a ColBERT checkpoint with "
            "tct_hf.ColBERTModel.from_pretrained(path) (tct_hf, Stanford ColBERT, multi-vector or PyLate directories)."
        )
    if teacher_autocast_dtype != "auto" and teacher_autocast_dtype not in DTYPES:
        raise ValueError(
            f"check_teacher: teacher_autocast_dtype must be 'auto' or one of {sorted(DTYPES)}, "
            f"got {teacher_autocast_dtype!r}."
        )
    return freeze(teacher)


def _padded(vectors: list[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    """A list of ``[n_i, d]`` token matrices → ``([B, max n, d] float32, [B, max n] bool)``."""
    lengths = torch.tensor([len(v) for v in vectors], device=device)
    padded = pad_sequence([v.to(device=device, dtype=torch.float32) for v in vectors], batch_first=True)
    mask = torch.arange(padded.shape[1], device=device)[None, :] < lengths[:, None]
    return padded, mask


def _colbert_inputs(teacher: ColBERTModel, queries: list[str], passages: list[str], device: torch.device) -> dict:
    """The texts in the teacher's own tokenization, under the trainer's batch keys (``teacher_query_input_ids``...)."""
    query_batch = teacher.tokenize_queries(queries).to(device)
    passage_batch = teacher.tokenize_passages(passages).to(device)
    return {
        "teacher_query_input_ids": query_batch["input_ids"],
        "teacher_query_attention_mask": query_batch["attention_mask"],
        "teacher_passage_input_ids": passage_batch["input_ids"],
        "teacher_passage_attention_mask": passage_batch["attention_mask"],
    }


def teacher_tokens(
    teacher: torch.nn.Module,
    queries: list[str],
    passages: list[str],
    teacher_autocast_dtype: str,
    device: torch.device,
    chunk_size: int | None = None,
) -> TeacherTokens:
    """The teacher's float32 token embeddings and scoring masks of the local queries and passages (inference mode);
    ``chunk_size`` texts per forward pass when given (the cached loss's ``mini_batch_size``), else all at once."""
    if teacher.device != device:
        teacher.to(device)
    if isinstance(teacher, ColBERTModel):
        inputs = _colbert_inputs(teacher, queries, passages, device)
        return teacher_token_embeddings(teacher, inputs, teacher_autocast_dtype, chunk_size=chunk_size)
    with torch.inference_mode(), teacher_autocast(teacher_autocast_dtype, device):
        options = {"show_progress_bar": False, "convert_to_numpy": False}
        query_vectors = teacher.encode_query(queries, batch_size=chunk_size or len(queries), **options)
        passage_vectors = teacher.encode_document(passages, batch_size=chunk_size or len(passages), **options)
        q, q_mask = _padded(query_vectors, device)
        d, d_mask = _padded(passage_vectors, device)
    return TeacherTokens(q, q_mask, d, d_mask)


def teacher_scores(
    teacher: torch.nn.Module,
    queries: list[str],
    passages: list[str],
    *,
    gather: bool,
    teacher_autocast_dtype: str,
    device: torch.device,
    chunk_size: int | None = None,
) -> Tensor:
    """MaxSim ``[B_local, N]`` (float32, no gradient) of the local queries against the batch's passages.

    ``passages`` are this process's passages in the losses' column order (positives, then each query's negatives);
    with ``gather`` the columns are every process's passages in the global order. ``chunk_size`` (the cached
    loss's ``mini_batch_size``): MaxSim blocks of ``chunk_size`` x ``chunk_size`` pairs, and for a `ColBERTModel`
    passages encoded and scored chunk by chunk, with ``gather`` against every process's queries, only score columns
    crossing processes (`streamed_in_batch_teacher_scores`).
    """
    if isinstance(teacher, ColBERTModel):
        # The training path's own scoring: with chunk_size, passages encoded and scored chunk by chunk.
        if teacher.device != device:
            teacher.to(device)
        inputs = _colbert_inputs(teacher, queries, passages, device)
        return in_batch_teacher_scores(
            teacher, inputs, gather=gather, dtype_name=teacher_autocast_dtype, chunk_size=chunk_size
        )
    tokens = teacher_tokens(teacher, queries, passages, teacher_autocast_dtype, device, chunk_size)
    return in_batch_token_scores(tokens, gather=gather, chunk_size=chunk_size)
