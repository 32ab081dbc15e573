"""The frozen ColBERT teacher's side of a training step: token embeddings computed once, then either the whole
in-batch score matrix or only each query's own pairs, in the precision the caller allows (MaxSim always in fp32).

What keeps the teacher cheap (measurements: benchmarks/RESULTS.md, from ``benchmarks/train_step.py``):

- ``torch.inference_mode`` (no autograd graph, no saved activations); only the small score matrix is copied out
  as a normal tensor, so the loss can use it as a target;
- passages encoded on their real tokens only (``teacher_passages="unpadded"``, the default): BERT and the projection
  run on the attended tokens packed into one row (`tct_hf.bert_unpadded`), so a batch padded to its longest passage
  costs only its real tokens; attention runs per group of length-sorted
  passages, ``CPU_ATTENTION_GROUPS`` (8) groups on the CPU and one launch on accelerators. ``"buckets"`` (length
  buckets each padded to its own longest passage, ``CPU_LENGTH_BUCKETS`` on the CPU) and ``"padded"`` (one call on
  the padded batch) stay for measurement. All three give the same vectors up to float rounding;
- ``teacher_autocast_dtype``: bf16/fp16 autocast for the BERT encoder, or exactly float32 (autocast explicitly off,
  so an outer mixed-precision context of the student cannot lower it); ``"auto"`` = bf16 where the hardware runs it
  natively (CUDA with bf16, or a CPU with ``avx512_bf16`` / AMX), else float32. Under autocast the small 128-d
  projection still runs in float32 on the encoder's float32 LayerNorm output: it costs little and about halves the
  bf16 teacher's distortion of softmax(scores / 0.25);
- MaxSim accumulated in float32 (autocast off) on the token embeddings computed once per step
  (`in_batch_teacher_scores` and `pairwise_teacher_scores` both take precomputed `TeacherTokens` when a caller
  needs both);
- under cached gradients (``chunk_size``), encoding and scoring chunk by chunk (`streamed_in_batch_teacher_scores`,
  `streamed_pairwise_teacher_scores`), so that the teacher's memory does not grow with the batch either; when
  gathering across processes, the queries' token embeddings (the short side) and score columns travel, never the
  passages' token embeddings.

Example:
    >>> resolve_teacher_dtype("float32", torch.device("cpu"))
    torch.float32
"""

from __future__ import annotations

import contextlib
import functools
from typing import NamedTuple

import torch
from torch import Tensor

from ..losses import chunk_ranges, gather_padded, gather_passages, rank
from ..losses.columns import own_columns
from ..modeling_colbert import MAXSIM_CHUNK_ELEMENTS, maxsim, maxsim_pairwise

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PASSAGE_LAYOUTS = ("unpadded", "buckets", "padded")
CPU_LENGTH_BUCKETS = 4
CPU_ATTENTION_GROUPS = 8


def default_attention_groups(count: int, device: torch.device) -> int:
    """Attention groups of the unpadded teacher for ``count`` passages: `CPU_ATTENTION_GROUPS` on the CPU (fewer
    for small batches, at least 2 passages a group), one launch on accelerators."""
    if device.type != "cpu":
        return 1
    return max(1, min(CPU_ATTENTION_GROUPS, count // 2))


def default_length_buckets(count: int, device: torch.device) -> int:
    """Buckets for ``count`` passages: `CPU_LENGTH_BUCKETS` on the CPU (one for fewer than 2 per bucket), one launch
    on accelerators."""
    if device.type != "cpu" or count < 2 * CPU_LENGTH_BUCKETS:
        return 1
    return CPU_LENGTH_BUCKETS


class TeacherTokens(NamedTuple):
    """The teacher's float32 token embeddings and scoring masks of one local batch."""

    queries: Tensor  # [B, Lq, dim]
    query_mask: Tensor  # [B, Lq] bool
    passages: Tensor  # [N, Ld, dim]
    passage_mask: Tensor  # [N, Ld] bool


def freeze(teacher: torch.nn.Module) -> torch.nn.Module:
    """Eval mode (no dropout) and no parameter gradients: the teacher is a fixed target."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when ``/proc/cpuinfo`` lists ``avx512_bf16`` or ``amx_bf16`` (oneDNN then runs bf16 GEMMs natively)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False
    return False


def resolve_teacher_dtype(dtype_name: str, device: torch.device) -> torch.dtype:
    """``"auto"``: bf16 on CUDA devices that support it and on CPUs with native bf16, else float32; other names map
    to their dtype (fp16 on CPU is refused: CPU autocast has no fast fp16 path)."""
    if dtype_name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
        return torch.float32
    if dtype_name not in DTYPES:
        raise ValueError(f"teacher_autocast_dtype must be 'auto' or one of {sorted(DTYPES)}, got {dtype_name!r}")
    dtype = DTYPES[dtype_name]
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("teacher_autocast_dtype='float16' needs a GPU; use 'bfloat16' or 'auto' on CPU.")
    return dtype


def teacher_autocast(dtype_name: str, device: torch.device):
    """bf16/fp16 autocast for the teacher's encoder; float32 turns autocast OFF (an outer bf16 context of the
    student would otherwise lower the 'float32' teacher too)."""
    dtype = resolve_teacher_dtype(dtype_name, device)
    if dtype == torch.float32:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


class _Float32Linear(torch.nn.Module):
    """Runs the wrapped projection with autocast off, on float32 inputs (same parameters, nothing copied)."""

    def __init__(self, linear: torch.nn.Module):
        super().__init__()
        self.linear = linear

    def forward(self, hidden: Tensor) -> Tensor:
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            return self.linear(hidden.float())


@contextlib.contextmanager
def float32_projection(teacher):
    """Within the block, ``teacher.linear`` (the ColBERT projection) ignores an enclosing autocast."""
    linear = getattr(teacher, "linear", None)
    if not isinstance(linear, torch.nn.Linear):
        yield
        return
    teacher.linear = _Float32Linear(linear)
    try:
        yield
    finally:
        teacher.linear = linear


def _right_padded(attention_mask: Tensor) -> tuple[bool, Tensor]:
    lengths = attention_mask.sum(dim=1)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    expected = (positions[None, :] < lengths[:, None]).to(attention_mask.dtype)
    return bool(torch.equal(attention_mask, expected)), lengths


def length_groups(attention_mask: Tensor, buckets: int) -> list[tuple[Tensor, int]] | None:
    """Rows sorted by length (longest first) and cut into ``buckets`` groups: ``[(row indices, group width)]``, the
    width being the group's longest row. None when one call on the whole batch is the way: ``buckets <= 1``, fewer
    than 2 rows per bucket (decided before the mask is read: no host synchronisation then), or not right padded."""
    if buckets <= 1 or attention_mask.shape[0] < 2 * buckets:
        return None
    is_right_padded, lengths = _right_padded(attention_mask)
    if not is_right_padded:
        return None
    groups = torch.tensor_split(torch.argsort(lengths, descending=True), buckets)
    return [(group, int(lengths[group[0]])) for group in groups]


def encode_passages_in_length_buckets(
    teacher, input_ids: Tensor, attention_mask: Tensor, buckets: int | None = None
) -> tuple[Tensor, Tensor]:
    """``teacher.encode_passage_tokens`` over length-sorted groups, each padded to its own longest passage.

    Returns the same ``([N, Ld, dim] float32, [N, Ld] bool)`` as one call on the whole batch (positions beyond a
    passage's group length are zero vectors with mask False). Falls back to one call when the batch is not right
    padded or ``buckets <= 1``.
    """
    count = input_ids.shape[0]
    if buckets is None:
        buckets = default_length_buckets(count, input_ids.device)
    groups = length_groups(attention_mask, buckets)
    if groups is None:
        embeddings, mask = teacher.encode_passage_tokens(input_ids, attention_mask)
        return embeddings.float(), mask
    passages, mask = None, torch.zeros(attention_mask.shape, dtype=torch.bool, device=attention_mask.device)
    for group, width in groups:
        group_embeddings, group_mask = teacher.encode_passage_tokens(
            input_ids[group, :width], attention_mask[group, :width]
        )
        if passages is None:
            shape = (count, input_ids.shape[1], group_embeddings.shape[-1])
            passages = torch.zeros(shape, dtype=torch.float32, device=group_embeddings.device)
        passages[group, :width] = group_embeddings.float()
        mask[group, :width] = group_mask
    return passages, mask


def encode_teacher_passages(
    teacher, input_ids: Tensor, attention_mask: Tensor, layout: str = "unpadded", length_buckets: int | None = None
) -> tuple[Tensor, Tensor]:
    """``teacher.encode_passage_tokens`` in one of `PASSAGE_LAYOUTS` (see the module docstring): ``([N, Ld, dim]
    float32, [N, Ld] bool)``, the same vectors whatever the layout up to float rounding."""
    if layout == "unpadded":
        groups = default_attention_groups(input_ids.shape[0], input_ids.device)
        embeddings, mask = teacher.encode_passage_tokens(input_ids, attention_mask, unpadded=groups)
        return embeddings.float(), mask
    if layout == "buckets":
        return encode_passages_in_length_buckets(teacher, input_ids, attention_mask, length_buckets)
    if layout == "padded":
        return encode_passages_in_length_buckets(teacher, input_ids, attention_mask, buckets=1)
    raise ValueError(f"teacher passage layout must be one of {PASSAGE_LAYOUTS}, got {layout!r}")


@contextlib.contextmanager
def _encoding(teacher, dtype_name: str, device: torch.device):
    """The teacher's encoder: inference mode, its autocast dtype, the projection in float32."""
    with torch.inference_mode(), teacher_autocast(dtype_name, device), float32_projection(teacher):
        yield


@contextlib.contextmanager
def _scoring(device: torch.device):
    """MaxSim: inference mode, autocast off (float32 even inside the student's mixed-precision autocast)."""
    with torch.inference_mode(), torch.autocast(device_type=device.type, enabled=False):
        yield


def teacher_token_embeddings(
    teacher,
    inputs: dict[str, Tensor],
    dtype_name: str = "float32",
    length_buckets: int | None = None,
    chunk_size: int | None = None,
    passage_layout: str = "unpadded",
) -> TeacherTokens:
    """Query and passage token embeddings of the local batch, float32 whatever the autocast dtype (inference mode:
    use them for scoring only). Passages in ``passage_layout`` (`encode_teacher_passages`; `length_buckets` is the
    "buckets" layout's count, default `default_length_buckets`). `chunk_size` (the trainer's
    `gradient_cache_chunk_size`): encode at most this many queries or passages per call, so the encoder's
    activations do not grow with the batch (only the float32 token embeddings do)."""
    device = inputs["teacher_query_input_ids"].device
    query_ids, query_attention = inputs["teacher_query_input_ids"], inputs["teacher_query_attention_mask"]
    passage_ids, passage_attention = inputs["teacher_passage_input_ids"], inputs["teacher_passage_attention_mask"]
    query_chunks = [(0, query_ids.shape[0])] if chunk_size is None else chunk_ranges(query_ids.shape[0], chunk_size)
    passage_chunks = (
        [(0, passage_ids.shape[0])] if chunk_size is None else chunk_ranges(passage_ids.shape[0], chunk_size)
    )
    with _encoding(teacher, dtype_name, device):
        queries = [
            teacher.encode_query_tokens(query_ids[begin:end], query_attention[begin:end])
            for begin, end in query_chunks
        ]
        passages = [
            encode_teacher_passages(
                teacher, passage_ids[begin:end], passage_attention[begin:end], passage_layout, length_buckets
            )
            for begin, end in passage_chunks
        ]
    q, q_mask = (torch.cat(parts) for parts in zip(*queries))
    d, d_mask = (torch.cat(parts) for parts in zip(*passages))
    return TeacherTokens(q.float(), q_mask, d, d_mask)


def cached_maxsim_elements(chunk_size: int | None, query_length: int, passage_length: int) -> int:
    """Element budget of one MaxSim similarity block: under cached gradients (`chunk_size` set), ``chunk_size``
    queries against ``chunk_size`` passages, so that the block does not grow with the batch (never more than
    `MAXSIM_CHUNK_ELEMENTS`, the budget without chunks).

    >>> cached_maxsim_elements(16, 36, 52), cached_maxsim_elements(None, 36, 52) == MAXSIM_CHUNK_ELEMENTS
    (479232, True)
    """
    if chunk_size is None:
        return MAXSIM_CHUNK_ELEMENTS
    return min(MAXSIM_CHUNK_ELEMENTS, chunk_size * chunk_size * query_length * passage_length)


def streamed_in_batch_teacher_scores(
    teacher,
    inputs: dict[str, Tensor],
    chunk_size: int,
    dtype_name: str = "float32",
    passage_layout: str = "unpadded",
    gather: bool = False,
) -> Tensor:
    """`in_batch_teacher_scores` of a cached-gradient step: the teacher's memory grows with the batch only through
    the queries' token embeddings (kept, ``[B, Lq, dim]`` float32: the short side) and the scores. Passages are
    encoded ``chunk_size`` at a time, scored against every query in MaxSim blocks of ``chunk_size`` queries x
    ``chunk_size`` passages (`cached_maxsim_elements`) and dropped. The same scores as the unchunked path up to
    float rounding.

    With `gather`, the short side travels instead of the passages: every process gathers all processes' query token
    embeddings (`gather_padded`, padded to the longest query with mask False), scores its own passages against all of
    them (``[B_global, N_local]``), and the score columns are gathered into the student's global column order
    (`gather_passages` of the transposed scores: [all ranks' positives, all ranks' negatives]); this process keeps
    its own queries' rows, ``[B_local, N_global]``. No process holds another process's passage tokens; the whole
    ``[B_global, N_global]`` float32 score matrix passes through each process once. Every process must hold the same
    number of queries and passages (else `ValueError`, as for any gathered batch)."""
    device = inputs["teacher_query_input_ids"].device
    query_ids, query_attention = inputs["teacher_query_input_ids"], inputs["teacher_query_attention_mask"]
    passage_ids, passage_attention = inputs["teacher_passage_input_ids"], inputs["teacher_passage_attention_mask"]
    num_local_queries = query_ids.shape[0]
    with _encoding(teacher, dtype_name, device):
        parts = [
            teacher.encode_query_tokens(query_ids[begin:end], query_attention[begin:end])
            for begin, end in chunk_ranges(num_local_queries, chunk_size)
        ]
    queries, query_mask = (torch.cat(part) for part in zip(*parts))
    del parts
    queries = queries.float()
    if gather:
        with _scoring(device):
            queries = gather_padded(queries, dim=1, value=0.0)  # [B_global, Lq_max, dim], rank order
            query_mask = gather_padded(query_mask, dim=1, value=False)
    budget = cached_maxsim_elements(chunk_size, queries.shape[1], passage_ids.shape[1])
    with _scoring(device):
        scores = queries.new_empty(queries.shape[0], passage_ids.shape[0])
    for begin, end in chunk_ranges(passage_ids.shape[0], chunk_size):
        with _encoding(teacher, dtype_name, device):
            passages, passage_mask = encode_teacher_passages(
                teacher, passage_ids[begin:end], passage_attention[begin:end], passage_layout
            )
        with _scoring(device):
            scores[:, begin:end] = teacher.maxsim(queries, query_mask, passages, passage_mask, chunk_elements=budget)
        del passages, passage_mask
    if gather:
        with _scoring(device):
            columns = gather_passages(scores.T, num_local_queries)  # [N_global, B_global], global column order
            own = slice(rank() * num_local_queries, (rank() + 1) * num_local_queries)
            scores = columns[:, own].T
    return _as_target(scores)


def streamed_pairwise_teacher_scores(
    teacher,
    inputs: dict[str, Tensor],
    chunk_size: int,
    dtype_name: str = "float32",
    passage_layout: str = "unpadded",
) -> Tensor:
    """`pairwise_teacher_scores` of a cached-gradient step: ``chunk_size`` queries at a time, encoded with their own
    ``1 + n`` passages, scored and dropped, so that only the ``[B, 1 + n]`` scores grow with the batch."""
    device = inputs["teacher_query_input_ids"].device
    query_ids, query_attention = inputs["teacher_query_input_ids"], inputs["teacher_query_attention_mask"]
    passage_ids, passage_attention = inputs["teacher_passage_input_ids"], inputs["teacher_passage_attention_mask"]
    b = query_ids.shape[0]
    parts = []
    for begin, end in chunk_ranges(b, chunk_size):
        own = own_columns(torch.arange(begin, end, device=device), b, passage_ids.shape[0]).flatten()
        with _encoding(teacher, dtype_name, device):
            q, q_mask = teacher.encode_query_tokens(query_ids[begin:end], query_attention[begin:end])
            d, d_mask = encode_teacher_passages(teacher, passage_ids[own], passage_attention[own], passage_layout)
        parts.append(_own_pair_scores(q.float(), q_mask, d, d_mask))
    with _scoring(device):
        scores = torch.cat(parts)
    return _as_target(scores)


def _own_pair_scores(q: Tensor, q_mask: Tensor, d: Tensor, d_mask: Tensor) -> Tensor:
    """MaxSim ``[b, 1 + n]`` of ``b`` queries with their own passages, ``d`` holding ``b (1 + n)`` passages in
    `own_columns` order (query 0's positive and negatives, then query 1's...)."""
    b = q.shape[0]
    repeat = d.shape[0] // b
    with _scoring(q.device):
        return maxsim_pairwise(
            q.repeat_interleave(repeat, dim=0), q_mask.repeat_interleave(repeat, dim=0), d, d_mask
        ).view(b, repeat)


def _as_target(scores: Tensor) -> Tensor:
    """A normal tensor copy of an inference-mode result (autograd may save a normal tensor for backward)."""
    return scores.clone()


def in_batch_teacher_scores(
    teacher,
    inputs: dict[str, Tensor],
    *,
    gather: bool,
    dtype_name: str = "float32",
    tokens: TeacherTokens | None = None,
    chunk_size: int | None = None,
    passage_layout: str = "unpadded",
) -> Tensor:
    """MaxSim of the local queries against every passage of the batch, global when `gather`: [B_local, N].

    Columns in the order of the student's gathered matrix ([all ranks' positives, all ranks' negatives];
    `tct_hf.losses.global_batch`). Without `chunk_size`, other processes' passages arrive as token embeddings padded
    to the longest. `chunk_size` (cached gradients) without precomputed `tokens`: passages encoded and scored chunk
    by chunk against the (gathered) queries' token embeddings, only score columns crossing processes
    (`streamed_in_batch_teacher_scores`); with precomputed `tokens`, they are kept and the (gathered) passages are
    scored in ``chunk_size`` x ``chunk_size`` MaxSim blocks.
    """
    if chunk_size is not None and tokens is None:
        return streamed_in_batch_teacher_scores(teacher, inputs, chunk_size, dtype_name, passage_layout, gather)
    if tokens is None:
        tokens = teacher_token_embeddings(teacher, inputs, dtype_name, passage_layout=passage_layout)
    return in_batch_token_scores(tokens, gather=gather, chunk_size=chunk_size, maxsim_fn=teacher.maxsim)


def in_batch_token_scores(tokens: TeacherTokens, *, gather: bool, chunk_size: int | None = None, maxsim_fn=maxsim):
    """MaxSim ``[B_local, N]`` of precomputed token embeddings: the local queries against the local passages, or
    with `gather` against every process's passages (token embeddings padded to the longest, in the student's global
    column order), in float32 (autocast off) and in blocks bounded by `cached_maxsim_elements`; a normal tensor
    copy, usable as a target."""
    q, q_mask, d, d_mask = tokens
    with _scoring(q.device):
        if gather:
            d = gather_passages(d, q.shape[0], pad_dim=1, pad_value=0.0)
            d_mask = gather_passages(d_mask, q.shape[0], pad_dim=1, pad_value=False)
        budget = cached_maxsim_elements(chunk_size, q.shape[1], d.shape[1])
        scores = maxsim_fn(q, q_mask, d, d_mask, chunk_elements=budget)
    return _as_target(scores)


def pairwise_teacher_scores(
    teacher,
    inputs: dict[str, Tensor],
    num_negatives: int,
    dtype_name: str = "float32",
    tokens: TeacherTokens | None = None,
    chunk_size: int | None = None,
    passage_layout: str = "unpadded",
) -> Tensor:
    """MaxSim of each local query with its own positive and negatives only: [B_local, 1 + n], column 0 the positive.

    B(1 + n) query-passage interactions instead of B x B(1 + n). `chunk_size` (cached gradients), without
    precomputed `tokens`: `streamed_pairwise_teacher_scores`.
    """
    if chunk_size is not None and tokens is None:
        return streamed_pairwise_teacher_scores(teacher, inputs, chunk_size, dtype_name, passage_layout)
    q, q_mask, d, d_mask = (
        tokens
        if tokens is not None
        else teacher_token_embeddings(teacher, inputs, dtype_name, passage_layout=passage_layout)
    )
    own = own_columns(torch.arange(q.shape[0], device=q.device), q.shape[0], d.shape[0]).flatten()  # [B (1 + n)]
    return _as_target(_own_pair_scores(q, q_mask, d[own], d_mask[own]))
