"""The frozen ColBERT teacher's side of a training step: token embeddings computed once, then either the whole
in-batch score matrix or only each query's own pairs, in the precision the caller allows (MaxSim always in fp32)."""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ..losses import gather_passages
from ..losses.columns import own_columns
from ..modeling_colbert import maxsim_pairwise

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def freeze(teacher: torch.nn.Module) -> torch.nn.Module:
    """Eval mode (no dropout) and no parameter gradients: the teacher is a fixed target."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def teacher_autocast(dtype_name: str, device: torch.device):
    """bf16/fp16 autocast for the teacher's encoder; float32 runs as is."""
    dtype = DTYPES[dtype_name]
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def teacher_token_embeddings(teacher, inputs: dict[str, Tensor], dtype_name: str = "float32"):
    """Query and passage token embeddings of the local batch, as float32 whatever the autocast dtype."""
    device = inputs["teacher_query_input_ids"].device
    with teacher_autocast(dtype_name, device):
        q, q_mask = teacher.encode_query_tokens(
            inputs["teacher_query_input_ids"], inputs["teacher_query_attention_mask"]
        )
        d, d_mask = teacher.encode_passage_tokens(
            inputs["teacher_passage_input_ids"], inputs["teacher_passage_attention_mask"]
        )
    return q.float(), q_mask, d.float(), d_mask


@torch.no_grad()
def in_batch_teacher_scores(teacher, inputs: dict[str, Tensor], *, gather: bool, dtype_name: str = "float32"):
    """MaxSim of the local queries against every passage of the batch, global when `gather`: [B_local, N].

    Other processes' passages arrive as token embeddings padded to the longest, in the column order of the student's
    gathered matrix ([all ranks' positives, all ranks' negatives]; `tct_hf.losses.global_batch`).
    """
    q, q_mask, d, d_mask = teacher_token_embeddings(teacher, inputs, dtype_name)
    if gather:
        b = q.shape[0]
        d = gather_passages(d, b, pad_dim=1, pad_value=0.0)
        d_mask = gather_passages(d_mask, b, pad_dim=1, pad_value=False)
    return teacher.maxsim(q, q_mask, d, d_mask)


@torch.no_grad()
def pairwise_teacher_scores(teacher, inputs: dict[str, Tensor], num_negatives: int, dtype_name: str = "float32"):
    """MaxSim of each local query with its own positive and negatives only: [B_local, 1 + n], column 0 the positive.

    B(1 + n) query-passage interactions instead of B x B(1 + n).
    """
    q, q_mask, d, d_mask = teacher_token_embeddings(teacher, inputs, dtype_name)
    b = q.shape[0]
    own = own_columns(torch.arange(b, device=q.device), b, d.shape[0])  # [B, 1 + n]
    repeat = own.shape[1]
    scores = maxsim_pairwise(
        q.repeat_interleave(repeat, dim=0),
        q_mask.repeat_interleave(repeat, dim=0),
        d[own.flatten()],
        d_mask[own.flatten()],
    )
    return scores.view(b, repeat)
