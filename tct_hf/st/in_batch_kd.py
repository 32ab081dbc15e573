"""`InBatchKDLoss`: TCT-ColBERT's in-batch knowledge distillation for any sentence-transformers model.

For the ``B`` queries of the (global) batch and all its ``N = B * (1 + n)`` passages (every positive and every
negative, gathered across processes):

    student[i, j] = scale * similarity(query_i, passage_j)    (the student's own similarity: cosine or dot)
    teacher[i, j] = MaxSim_ColBERT(query_i, passage_j)        (on the exact texts, the teacher's own tokenizer)
    loss = mean_i KL(softmax(teacher[i] / temperature) || softmax(student[i]))

with duplicate passages masked (`tct_hf.losses.duplicate_passage_mask`, passage ids = content hashes of the texts).
The maths is `tct_hf.losses.in_batch_kd_loss` and the gathering `tct_hf.losses.build_global_scores`; this module
only turns sentence-transformers' features into their inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn

from ..data import passage_id
from ..losses import GlobalScores, build_global_scores, in_batch_kd_loss
from ..losses.citations import TCT_COLBERT_CITATION
from ..losses.global_batch import resolve_gather_across_devices
from ..losses.logits import check_temperature
from .teacher import check_teacher, teacher_scores
from .texts import TEXT_KEY, keep_texts

__all__ = ["DEFAULT_SCALES", "InBatchKDLoss"]

# Multiplier of the student's similarity (the inverse of a student temperature). Cosine: MultipleNegativesRanking-
# Loss's 20 (cosines lie in [-1, 1]; unscaled, the student's softmax could not become as sharp as the teacher's).
# Dot: 1, the paper's untempered student.
DEFAULT_SCALES = {"cosine": 20.0, "dot": 1.0}


class InBatchKDLoss(nn.Module):
    """In-batch KD from a frozen ColBERT teacher into a `SentenceTransformer` student (Lin, Yang & Lin, 2021).

    Args:
        model: the `SentenceTransformer` student. It keeps its modules, pooling, normalisation, prompts (given to the
            trainer as usual) and similarity; ``model.similarity_fn_name`` must be ``"cosine"`` or ``"dot"``.
        teacher: a tct_hf `ColBERTModel` or a sentence-transformers `MultiVectorEncoder`. It is frozen (eval mode,
            no gradient), moved to the student's device on first use, and never saved with the student.
        temperature: the teacher's temperature (0.25, the paper's).
        scale: multiplies the student's similarity before its softmax. None: 20.0 for cosine (as
            MultipleNegativesRankingLoss), 1.0 for dot (the paper's untempered student).
        mask_duplicates: exclude duplicate passages (same text) as `tct_hf.losses.duplicate_passage_mask` says.
        gather_across_devices: gather every process's positives and negatives, with gradient, so each query is
            distilled against the whole global batch. None (default): on when more than one process runs.
        teacher_autocast_dtype: the teacher encoder's precision: "auto" (bf16 where the hardware runs it natively, else
            float32), "float32", "bfloat16", "float16" (GPU). MaxSim always accumulates in float32.

    References:
        Lin, Yang & Lin, "In-Batch Negatives for Knowledge Distillation with Tightly-Coupled Teachers for Dense
        Retrieval", RepL4NLP 2021. https://aclanthology.org/2021.repl4nlp-1.17/

    Requirements:
        1. (query, positive) pairs or (query, positive, negative_1, ..., negative_n) tuples of texts
        2. the loss is created before the trainer and given to it as an instance (not a factory): its constructor
           makes the student's ``preprocess`` also return the raw texts (`tct_hf.st.texts`), so the trainer's default
           collator hands them to the loss. Otherwise pass ``data_collator=InBatchKDDataCollator.for_model(model,
           args)``.
        3. at least 2 queries per (global) batch

    Inputs:
        +-------------------------------------------------+--------+
        | Texts                                           | Labels |
        +=================================================+========+
        | (query, positive, negative_1, ..., negative_n)  | none   |
        +-------------------------------------------------+--------+

    Averaging: the mean over this process's queries of their KL over every passage of the global batch. With DDP's
    gradient averaging, ``R`` processes x ``B/R`` queries give the loss and gradients of 1 process x ``B`` queries.

    Recommendations:
        Use ``batch_sampler=BatchSamplers.NO_DUPLICATES`` (fewer masked duplicates, more distinct negatives).

    Example::

        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
        from tct_hf import ColBERTModel
        from tct_hf.st import InBatchKDLoss

        student = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
        teacher = ColBERTModel.from_pretrained("colbert-ir/colbertv2.0")
        trainer = SentenceTransformerTrainer(
            model=student, args=args, train_dataset=dataset, loss=InBatchKDLoss(student, teacher)
        )
        trainer.train()
    """

    def __init__(
        self,
        model: SentenceTransformer,
        teacher: nn.Module,
        temperature: float = 0.25,
        scale: float | None = None,
        mask_duplicates: bool = True,
        gather_across_devices: bool | None = None,
        teacher_autocast_dtype: str = "auto",
    ) -> None:
        super().__init__()
        if not isinstance(model, SentenceTransformer):
            raise TypeError(
                f"InBatchKDLoss: model must be a sentence_transformers.SentenceTransformer (the student), got "
                f"{type(model).__name__}."
            )
        similarity = model.similarity_fn_name
        if similarity not in DEFAULT_SCALES:
            raise ValueError(
                f"InBatchKDLoss: the student's similarity_fn_name is {similarity!r}; in-batch KD needs a similarity "
                "whose "
                f"scores are logits: one of {sorted(DEFAULT_SCALES)}. Set model.similarity_fn_name = 'cosine' (or "
                "'dot') before training."
            )
        check_temperature("InBatchKDLoss", "temperature", temperature)
        if scale is not None and not scale > 0:
            raise ValueError(f"InBatchKDLoss: scale must be > 0 (or None for the default), got {scale}.")
        self.model = model
        self.teacher = check_teacher(teacher, teacher_autocast_dtype)
        self.similarity_fn_name = similarity
        self.temperature = temperature
        self.scale = DEFAULT_SCALES[similarity] if scale is None else float(scale)
        self.mask_duplicates = mask_duplicates
        self.gather_across_devices = gather_across_devices
        self.teacher_autocast_dtype = teacher_autocast_dtype
        # Before the trainer exists: it builds its collator from model.preprocess, which now keeps the texts.
        keep_texts(model)

    # ------------------------------------------------------------------ texts

    @staticmethod
    def batch_texts(sentence_features: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        """``(queries, passages)`` of the local batch, removing the texts from the features.

        Passages in the losses' column order: the ``B`` positives, then each query's negatives in turn (negative
        ``k`` of query ``i`` at ``B + i * n + k``), from columns (query, positive, negative_1, ..., negative_n).
        """
        if len(sentence_features) < 2:
            raise ValueError(
                f"InBatchKDLoss: the dataset has {len(sentence_features)} text column; in-batch KD needs (query, "
                "positive"
                "[, negative_1, ..., negative_n]) columns, in that order: add the positive column."
            )
        columns = []
        for index, features in enumerate(sentence_features):
            texts = features.pop(TEXT_KEY, None)
            if texts is None:
                raise ValueError(
                    f"InBatchKDLoss: the batch carries no texts for the teacher (column {index}). The teacher reads "
                    "the exact texts with its own tokenizer; they reach the loss through the collator that "
                    "SentenceTransformerTrainer builds from the student's preprocess once the loss exists. Create the "
                    "loss before the trainer and pass the instance, SentenceTransformerTrainer(model=student, "
                    "loss=InBatchKDLoss(student, teacher), ...), not a factory; or pass data_collator="
                    "InBatchKDDataCollator.for_model(student, args). Every text column must hold strings."
                )
            columns.append(list(texts))
        queries, positives, negatives = columns[0], columns[1], columns[2:]
        num_queries = len(queries)
        if any(len(column) != num_queries for column in columns):
            raise ValueError(f"InBatchKDLoss: columns of unequal length {[len(c) for c in columns]}.")
        passages = positives + [column[i] for i in range(num_queries) for column in negatives]
        return queries, passages

    # ------------------------------------------------------------------ the two score matrices

    # Texts per teacher forward pass: None = the whole batch at once (`CachedInBatchKDLoss`: its mini_batch_size).
    teacher_chunk_size: int | None = None

    @property
    def device(self) -> torch.device:
        """The student's device (read from its parameters: the trainer may have wrapped the model, e.g. in DDP)."""
        return next(self.model.parameters()).device

    def teacher_scores(self, queries: list[str], passages: list[str], device: torch.device | None = None) -> Tensor:
        """The teacher's MaxSim ``[B_local, N]`` of the local queries against the (gathered) passages, float32,
        no gradient. ``passages`` in the column order of `batch_texts`."""
        return teacher_scores(
            self.teacher,
            queries,
            passages,
            gather=resolve_gather_across_devices(self.gather_across_devices),
            teacher_autocast_dtype=self.teacher_autocast_dtype,
            device=self.device if device is None else device,
            chunk_size=self.teacher_chunk_size,
        )

    @staticmethod
    def passage_ids(passages: list[str], device: torch.device | None = None) -> Tensor:
        """Content-hash ids of the passages (`tct_hf.data.passage_id`), for the duplicate mask."""
        return torch.tensor([passage_id(text) for text in passages], dtype=torch.int64, device=device)

    def student_scores(
        self, query_embeddings: Tensor, passage_embeddings: Tensor, passage_ids: Tensor | None = None
    ) -> GlobalScores:
        """The student's logits ``scale * similarity`` ``[B_local, N]`` against the (gathered, with gradient)
        passages, with each row's positive column and the duplicate mask (`tct_hf.losses.GlobalScores`)."""
        if self.similarity_fn_name == "cosine":
            query_embeddings = F.normalize(query_embeddings, p=2, dim=-1)
            passage_embeddings = F.normalize(passage_embeddings, p=2, dim=-1)
        batch = build_global_scores(
            query_embeddings,
            passage_embeddings,
            passage_ids=passage_ids,
            gather_across_devices=self.gather_across_devices,
            mask_duplicates=self.mask_duplicates,
        )
        if batch.num_queries < 2:
            raise ValueError(
                "InBatchKDLoss: in-batch KD needs at least 2 queries per batch (1 query gives no in-batch passages), "
                "got "
                "per_device_train_batch_size=1 on 1 process: raise per_device_train_batch_size (and set "
                "dataloader_drop_last=True if the last batch can hold a single example)."
            )
        return dataclasses.replace(batch, scores=batch.scores * self.scale)

    def loss_from_scores(self, student: GlobalScores, teacher: Tensor) -> Tensor:
        """`tct_hf.losses.in_batch_kd_loss` of the student's logits (untempered: the scale is in them) against the
        teacher's scores over ``temperature``."""
        return in_batch_kd_loss(
            student.scores, teacher, temperature=self.temperature, labels=student.labels, mask=student.mask
        )

    # ------------------------------------------------------------------ sentence-transformers' entry points

    def embed(self, sentence_features: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        """Student embeddings ``(queries [B, H], passages [B * (1 + n), H])``, passages in `batch_texts` order."""
        embeddings = embed_columns(self.model, sentence_features)
        return self.split_embeddings(embeddings)

    @staticmethod
    def split_embeddings(embeddings: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Per-column embeddings (query, positive, negative_1, ...) → ``(queries, passages in column order)``."""
        queries, positives = embeddings[0], embeddings[1]
        if len(embeddings) == 2:
            return queries, positives
        negatives = torch.stack(embeddings[2:], dim=1).flatten(0, 1)  # [B, n, H] -> query i's negatives in turn
        return queries, torch.cat([positives, negatives], dim=0)

    def forward(self, sentence_features: Iterable[dict[str, Any]], labels: Tensor | None = None) -> Tensor:
        sentence_features = [dict(features) for features in sentence_features]
        queries, passages = self.batch_texts(sentence_features)
        query_embeddings, passage_embeddings = self.embed(sentence_features)
        ids = self.passage_ids(passages, device=query_embeddings.device) if self.mask_duplicates else None
        student = self.student_scores(query_embeddings, passage_embeddings, ids)
        teacher = self.teacher_scores(queries, passages, device=query_embeddings.device)
        return self.loss_from_scores(student, teacher)

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "teacher": _teacher_name(self.teacher),
            "temperature": self.temperature,
            "scale": self.scale,
            "similarity_fct": self.similarity_fn_name,
            "mask_duplicates": self.mask_duplicates,
            "gather_across_devices": self.gather_across_devices,
            "teacher_autocast_dtype": self.teacher_autocast_dtype,
        }

    @property
    def citation(self) -> str:
        return TCT_COLBERT_CITATION


def _teacher_name(teacher: nn.Module) -> str:
    name = getattr(getattr(teacher, "config", None), "_name_or_path", None) or getattr(
        getattr(teacher, "model_card_data", None), "base_model", None
    )
    return f"{type(teacher).__name__}({name})" if name else type(teacher).__name__
