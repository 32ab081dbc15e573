"""In-batch KD for a sentence-transformers model at small scale (Cranfield), against sentence-transformers' baselines.

    HF_HUB_OFFLINE=1 python benchmarks/reproduce.py --st --output benchmarks/results/reproduce_st.json

Every trained variant starts from the same all-MiniLM-L6-v2 checkpoint, takes the same number of steps of the same
batch size on the same BM25 training examples (query, judged-relevant positive, 1 BM25 negative), per seed:

- ``st_in_batch_kd``: the native sentence-transformers model (its mean pooling, normalisation, cosine, 256 tokens)
  with `tct_hf.st.InBatchKDLoss` (teacher temperature 0.25, student scale 20): KD over the whole batch;
- ``st_mnrl``: the same with `MultipleNegativesRankingLoss` (scale 20, no teacher);
- ``st_distill_kl``: the same with `DistillKLDivLoss` on the teacher's scores of each query's own positive and
  negative (pairwise KD from stored labels): cosine student over temperature 0.05 (= scale 20), teacher over 0.25,
  as the in-batch loss; sentence-transformers multiplies that loss by the student temperature squared (0.0025),
  which is undone here so that both KD losses reach the optimiser at the same scale (mean KL over queries);
- ``tct_in_batch``: the TCT-convention student (`TCTModel` from the same checkpoint: prefixes, [MASK] augmentation,
  mean from position 4, dot product) with `TCTTrainer` in-batch KD, as in ``reproduce.py``.

The sentence-transformers variants draw batches with ``BatchSamplers.NO_DUPLICATES`` (the same batches for all
three in a seed); the TCT student draws its own shuffled batches. The teacher (ColBERT, TCT conventions, dim 128,
fine-tuned from the same checkpoint on the same examples) is trained once, with seed 0, and shared by every seed:
seeds vary the negatives drawn and the batch order. Rows without training: BM25 and the zero-shot native model.

Evaluation as in ``reproduce.py`` (held-out queries, whole collection, exact inner product, top 100: nDCG@10,
RR@10, R@100); the sentence-transformers models are encoded under bf16 autocast when the CPU runs bf16 natively (the
zero-shot row too, so every native row is measured alike). Paired t-tests of ``st_in_batch_kd`` against each other
row on per-query nDCG@10 pooled over seeds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

import torch
from torch import nn

logger = logging.getLogger("reproduce.st")

ST_FULL = {"seeds": 3, "teacher_steps": 40, "student_steps": 20, "hn_steps": 1}
ST_QUICK = {"seeds": 1, "teacher_steps": 8, "student_steps": 6, "hn_steps": 1}
ST_VARIANTS = ("st_in_batch_kd", "st_mnrl", "st_distill_kl")
REFERENCE = "st_in_batch_kd"
STUDENT_TEMPERATURE = 0.05  # = 1 / scale 20, the in-batch loss's and MNRL's default for cosine students


class UnscaledDistillKLDivLoss(nn.Module):
    """sentence-transformers' `DistillKLDivLoss`, divided by the student temperature squared it multiplies in."""

    def __init__(self, model, teacher_temperature: float):
        super().__init__()
        from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
        from sentence_transformers.util import pairwise_cos_sim

        self.model = model
        self.inner = DistillKLDivLoss(
            model,
            similarity_fct=pairwise_cos_sim,
            student_temperature=STUDENT_TEMPERATURE,
            teacher_temperature=teacher_temperature,
        )

    def forward(self, sentence_features, labels):
        self.inner.model = self.model  # the trainer may have swapped in a wrapped model
        return self.inner(sentence_features, labels) / STUDENT_TEMPERATURE**2

    def get_config_dict(self) -> dict[str, Any]:
        return {**self.inner.get_config_dict(), "divided_by_student_temperature_squared": True}

    @property
    def citation(self) -> str:
        return self.inner.citation


def pairwise_labels(teacher, columns):
    """The teacher's MaxSim of each (query, positive) and (query, negative_1): a ``label`` column of 2 scores."""

    def label(batch: dict) -> dict:
        positive = teacher.score(batch["query"], batch["positive"])
        negative = teacher.score(batch["query"], batch["negative_1"])
        return {"label": [[float(p), float(n)] for p, n in zip(positive, negative)]}

    return columns.map(label, batched=True, batch_size=64, desc="teacher scores")


def bf16_context(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def evaluate_native(model, data: dict[str, Any], bf16: bool) -> dict[str, Any]:
    from reproduce import evaluate_encoder

    from tct_hf.retrieval.encoders import SentenceTransformerEncoder

    with bf16_context(bf16):
        metrics, _ = evaluate_encoder(SentenceTransformerEncoder(model), data)
    return metrics


def train_native(config, variant: str, teacher, columns, labelled, seed: int, work_dir: str):
    """A fresh native student trained with `variant`'s loss through SentenceTransformerTrainer."""
    from reproduce import timing
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from transformers import set_seed

    from tct_hf.st import InBatchKDLoss

    set_seed(seed)
    student = SentenceTransformer(config.backbone, device="cpu")
    steps = config.student_steps
    args = SentenceTransformerTrainingArguments(
        output_dir=os.path.join(work_dir, f"{variant}-{seed}"),
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.student_lr,
        warmup_steps=0.1,
        lr_scheduler_type="linear",
        weight_decay=0.01,
        max_grad_norm=1.0,
        logging_steps=max(1, steps // 4),
        save_strategy="no",
        report_to="none",
        seed=seed,
        data_seed=seed,
        dataloader_drop_last=True,
        disable_tqdm=True,
        use_cpu=True,
        bf16=config.bf16,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
    )
    dataset = columns
    if variant == "st_in_batch_kd":
        teacher_autocast_dtype = "bfloat16" if config.bf16 else "float32"
        loss = InBatchKDLoss(
            student, teacher, temperature=config.temperature, teacher_autocast_dtype=teacher_autocast_dtype
        )
    elif variant == "st_mnrl":
        loss = MultipleNegativesRankingLoss(student)
    elif variant == "st_distill_kl":
        loss, dataset = UnscaledDistillKLDivLoss(student, config.temperature), labelled
    else:
        raise ValueError(f"unknown variant {variant!r}")
    trainer = SentenceTransformerTrainer(model=student, args=args, train_dataset=dataset, loss=loss)
    output = trainer.train()
    student.eval()
    return student, timing(output, steps)


def run_study(config, data: dict[str, Any], work_dir: str) -> dict[str, Any]:
    """Fixed rows, the shared teacher, then per seed the four trained variants; summaries and t-tests."""
    from reproduce import (
        bm25_examples,
        brief,
        evaluate_bm25,
        evaluate_colbert,
        evaluate_encoder,
        paired_tests,
        summarize,
        train_student,
        train_teacher,
        with_fixed_baselines,
    )
    from sentence_transformers import SentenceTransformer

    from tct_hf import TCTModel
    from tct_hf.st import to_sentence_transformers_columns

    dtype = torch.bfloat16 if config.bf16 else None
    fixed = {"bm25": evaluate_bm25(data)}
    fixed["zero_shot_sentence_transformers"] = evaluate_native(
        SentenceTransformer(config.backbone, device="cpu"), data, config.bf16
    )
    for name, metrics in fixed.items():
        logger.info("%s: %s", name, brief(metrics))

    started = time.perf_counter()
    teacher, teacher_timing = train_teacher(config, bm25_examples(data, config.negatives_depth, 0), 0, work_dir)
    teacher_metrics = evaluate_colbert(teacher, data, config.passage_max_length, dtype)  # sets passage length
    teacher.config.query_max_length = config.query_max_length + teacher.config.skip_positions
    logger.info("teacher: %s", brief(teacher_metrics))
    teacher_seconds = round(time.perf_counter() - started, 1)

    per_seed = []
    for seed in range(config.seeds):
        result: dict[str, Any] = {"seed": seed, "timings": {}, "metrics": {"teacher": teacher_metrics}}
        seed_started = time.perf_counter()
        train = bm25_examples(data, config.negatives_depth, seed)
        columns = to_sentence_transformers_columns(train, num_negatives=1)
        labelled = pairwise_labels(teacher, columns)
        result["train_examples"] = len(train)
        for variant in ST_VARIANTS:
            student, result["timings"][variant] = train_native(
                config, variant, teacher, columns, labelled, seed, work_dir
            )
            result["metrics"][variant] = evaluate_native(student, data, config.bf16)
            logger.info(
                "seed %d %s: %s (%s)", seed, variant, brief(result["metrics"][variant]), result["timings"][variant]
            )
        tct = TCTModel.from_pretrained(config.backbone)
        result["timings"]["tct_in_batch"] = train_student(
            config, tct, teacher, train, "in_batch", seed, config.student_steps, work_dir
        )
        result["metrics"]["tct_in_batch"], _ = evaluate_encoder(tct, data, dtype, config.passage_max_length)
        logger.info("seed %d tct_in_batch: %s", seed, brief(result["metrics"]["tct_in_batch"]))
        result["timings"]["seed_total_seconds"] = round(time.perf_counter() - seed_started, 1)
        per_seed.append(result)

    everything = with_fixed_baselines(per_seed, fixed)
    return {
        "fixed": fixed,
        "teacher": {"metrics": teacher_metrics, "timing": teacher_timing, "seconds_with_eval": teacher_seconds},
        "per_seed": per_seed,
        "summary": summarize(everything),
        "t_tests_nDCG@10": paired_tests(everything, reference=REFERENCE),
    }
