"""Training arguments for TCT-ColBERT distillation and ColBERT teacher fine-tuning."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .teacher import PASSAGE_LAYOUTS

KD_MODES = ("in_batch", "pairwise", "none")
TEACHER_DTYPES = ("auto", "float32", "bfloat16", "float16")
TEACHER_PASSAGES = PASSAGE_LAYOUTS

# The published recipe (castorini/tct_colbert `train/model_fn.py`; Lin, Yang & Lin 2021, section 4.1).
PAPER_DEFAULTS: dict[str, object] = {
    "per_device_train_batch_size": 96,
    "learning_rate": 7e-6,
    "warmup_steps": 10_000,
    "lr_scheduler_type": "linear",
    "weight_decay": 0.01,
    "adam_epsilon": 1e-6,
    "max_grad_norm": 1.0,
    "max_steps": 160_000,
    "temperature": 0.25,
    "query_max_length": 32,
    "passage_max_length": 150,
    "num_negatives": 1,
    "kd_mode": "in_batch",
}


# The paper's TensorFlow run: 8 TPU cores x 12 queries, each core's in-batch softmax over its own 24 passages
# (castorini/tct_colbert main.py num_tpu_cores=8, train_batch_size=96; loss.py batch_max_sim_softmax_loss per core).
PAPER_TPU_CORES = 8
PAPER_QUERIES_PER_CORE = 12
SEMANTICS = ("global", "tpu")


def keep_passages_whole(args: TrainingArguments) -> None:
    """Turn off accelerate's batch dispatching (its default for iterable datasets such as streamed triples): it
    slices every tensor of a batch to the queries' first dimension, which would drop the passages beyond the
    first B (all negatives) without a word. Each process then reads its own batches of the dataset."""
    config = args.accelerator_config
    if config.dispatch_batches or config.split_batches:
        raise ValueError(
            "accelerator_config dispatch_batches / split_batches slice every tensor of a batch to the number of "
            "queries, which drops the passages of a tct_hf batch (B queries, B(1+n) passages): leave them unset."
        )
    config.dispatch_batches = False


@dataclass
class TCTTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus the knobs of in-batch knowledge distillation.

    Lengths exclude the textual prefix (`[CLS] [Q] ` / `[CLS] [D] `, 4 tokens with a BERT uncased vocab), as the
    paper counts them: queries 32 (+4 = 36 tokens), passages 150 (+4 = 154 tokens).

    Example:
        >>> args = TCTTrainingArguments.from_paper_defaults(output_dir="out", max_steps=100)
        >>> args.learning_rate, args.temperature
        (7e-06, 0.25)
    """

    kd_mode: str = field(
        default="in_batch",
        metadata={
            "help": "in_batch: KL over the whole B x B(1+n) matrix (TCT); pairwise: KL over each query's own positive "
            "and negatives; none: in-batch negatives cross-entropy without a teacher."
        },
    )
    temperature: float = field(default=0.25, metadata={"help": "Teacher temperature: softmax(teacher_scores / T)."})
    student_temperature: float = field(
        default=1.0,
        metadata={
            "help": "Student temperature: softmax(student_scores / T_s) (1.0 = untempered, the published recipe); "
            "with kd_mode=none, the temperature of the in-batch cross-entropy."
        },
    )
    ce_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of an extra ground-truth cross-entropy term over the KD's candidates (all passages for "
            "in_batch, the query's own for pairwise; 0 = pure KD, as the paper)."
        },
    )
    query_max_length: int = field(default=32, metadata={"help": "Query tokens after the prefix (paper: 32)."})
    passage_max_length: int = field(default=150, metadata={"help": "Passage tokens after the prefix (paper: 150)."})
    num_negatives: int = field(default=1, metadata={"help": "Negatives per query in a batch (paper: 1)."})
    gather_across_devices: bool | None = field(
        default=None,
        metadata={
            "help": "All-gather passages across processes so every query sees the global batch as negatives. "
            "Default: on when more than one process runs."
        },
    )
    mask_duplicate_passages: bool = field(
        default=True,
        metadata={"help": "Never count a copy of a query's positive, or a repeated passage, as an extra negative."},
    )
    teacher_autocast_dtype: str = field(
        default="auto",
        metadata={
            "help": "Autocast dtype of the frozen teacher's encoder (MaxSim and the 128-d projection stay float32): "
            "float32, bfloat16, float16 or auto (default: bfloat16 where the hardware runs it natively, CUDA with "
            "bf16 or a CPU with avx512_bf16/AMX, else float32); the bf16 teacher's cost in fidelity is measured in "
            "benchmarks/RESULTS.md. Use float32 for bit-level comparisons (bf16 rounding depends on how passages are "
            "batched)."
        },
    )
    gradient_cache_chunk_size: int | None = field(
        default=None,
        metadata={
            "help": "Cached gradients (GradCache): embed queries and passages in chunks of this many rows, so the "
            "student's activation memory is that of one chunk whatever the batch; the loss stays the in-batch loss "
            "of the whole (gathered) batch and the gradients are the same. Costs one extra student forward per "
            "step. At most per_device_train_batch_size. None (default): off."
        },
    )
    teacher_passages: str = field(
        default="unpadded",
        metadata={
            "help": "How the frozen teacher encodes passages: unpadded (real tokens only, the default), buckets "
            "(length buckets each padded to its longest) or padded (one call on the padded batch); the same scores "
            "up to float rounding (tct_hf/training/teacher.py)."
        },
    )
    keep_freed_host_memory: bool = field(
        default=True,
        metadata={
            "help": "When training on the CPU, tell glibc's malloc to keep freed memory for the next step instead of "
            "unmapping it (tct_hf.host_memory): faster steps; the process keeps its peak memory."
        },
    )
    skip_nonfinite_steps: bool = field(
        default=False,
        metadata={
            "help": "Skip an optimizer step whose loss or gradient is NaN or infinite (counted in the logs as "
            "nonfinite_steps_skipped, each one a warning) instead of stopping with an error naming the step "
            "(tct_hf.training.nonfinite)."
        },
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the collator builds every input the loss needs."}
    )

    def __post_init__(self):
        super().__post_init__()
        keep_passages_whole(self)
        if self.kd_mode not in KD_MODES:
            raise ValueError(f"kd_mode must be one of {KD_MODES}, got {self.kd_mode!r}")
        if self.teacher_autocast_dtype not in TEACHER_DTYPES:
            raise ValueError(
                f"teacher_autocast_dtype must be one of {TEACHER_DTYPES}, got {self.teacher_autocast_dtype!r}"
            )
        if self.teacher_passages not in TEACHER_PASSAGES:
            raise ValueError(f"teacher_passages must be one of {TEACHER_PASSAGES}, got {self.teacher_passages!r}")
        if self.temperature <= 0 or self.student_temperature <= 0:
            raise ValueError("temperature and student_temperature must be > 0")
        if self.kd_mode == "none" and self.ce_weight != 0:
            raise ValueError(
                f"ce_weight={self.ce_weight} adds a cross-entropy term to a KD loss; kd_mode='none' is already the "
                "in-batch cross-entropy: leave ce_weight at 0 (student_temperature sets its temperature)."
            )
        if self.num_negatives < 0:
            raise ValueError(f"num_negatives must be >= 0, got {self.num_negatives}")
        if self.query_max_length < 1 or self.passage_max_length < 1:
            raise ValueError("query_max_length and passage_max_length must be >= 1")
        if self.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns=True would let Trainer drop the collator's inputs; tct_hf needs it False."
            )
        chunk = self.gradient_cache_chunk_size
        if chunk is not None:
            if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
                raise ValueError(
                    f"gradient_cache_chunk_size must be a positive number of rows per forward pass, got {chunk!r}; "
                    "leave it None to train without cached gradients."
                )
            if chunk > self.per_device_train_batch_size:
                raise ValueError(
                    f"gradient_cache_chunk_size={chunk} is larger than per_device_train_batch_size="
                    f"{self.per_device_train_batch_size}: caching would only add a forward pass. Use a chunk "
                    "smaller than the batch (e.g. the batch that fits without caching), or None."
                )

    @classmethod
    def from_paper_defaults(
        cls, semantics: str = "global", num_devices: int | None = None, **overrides
    ) -> TCTTrainingArguments:
        """Arguments of the published recipe (lr 7e-6, 10k warmup + linear decay, AdamW wd 0.01, eps 1e-6, clip 1.0,
        160k steps, T=0.25, 32/150 tokens, 1 negative); `overrides` win.

        Args:
            semantics: ``"global"`` (tct_hf's default): one batch of 96 queries per step (divide
                ``per_device_train_batch_size`` by the number of processes), passages gathered across devices, so
                every query's softmax runs over all 192 passages. ``"tpu"``: the paper's TensorFlow run exactly, 8
                independent groups of 12 queries per step, each query's softmax over its own group's 24 passages:
                12 queries per device, no gathering, no duplicate masking (the paper has none) and
                ``gradient_accumulation_steps = 8 / num_devices``. The remaining differences (per-core clipping then
                sum, learning-rate decay from step 0, Keras' KL clipping) are listed in docs/design.md.
            num_devices: processes of the run, for ``"tpu"`` (must divide 8); default: ``$WORLD_SIZE`` or 1.

        Example:
            >>> TCTTrainingArguments.from_paper_defaults(semantics="tpu", output_dir="out").gradient_accumulation_steps
            8
        """
        if semantics not in SEMANTICS:
            raise ValueError(f"semantics must be one of {SEMANTICS}, got {semantics!r}.")
        values = dict(PAPER_DEFAULTS)
        if semantics == "tpu":
            devices = int(os.environ.get("WORLD_SIZE", "1")) if num_devices is None else num_devices
            if devices < 1 or PAPER_TPU_CORES % devices:
                raise ValueError(
                    f"semantics='tpu' reproduces {PAPER_TPU_CORES} TPU cores x {PAPER_QUERIES_PER_CORE} queries: "
                    f"the number of devices must divide {PAPER_TPU_CORES}, got {devices}."
                )
            values.update(
                per_device_train_batch_size=PAPER_QUERIES_PER_CORE,
                gradient_accumulation_steps=PAPER_TPU_CORES // devices,
                gather_across_devices=False,
                mask_duplicate_passages=False,
            )
        return cls(**{**values, **overrides})


@dataclass
class ColBERTTrainingArguments(TrainingArguments):
    """Arguments for fine-tuning the ColBERT teacher with softmax cross-entropy over MaxSim scores."""

    query_max_length: int = field(default=32, metadata={"help": "Query tokens after the prefix/marker."})
    passage_max_length: int = field(default=150, metadata={"help": "Passage tokens after the prefix/marker."})
    num_negatives: int = field(default=1, metadata={"help": "Negatives per query."})
    in_batch_negatives: bool = field(
        default=True, metadata={"help": "Score each query against every passage in the batch, not only its own."}
    )
    mask_duplicate_passages: bool = field(default=True, metadata={"help": "See TCTTrainingArguments."})
    logit_scale: float = field(
        default=1.0,
        metadata={
            "help": "Factor on the MaxSim scores before the cross-entropy's softmax (1 = Stanford ColBERT). The "
            "TCT-ColBERT paper's TensorFlow code multiplies by 4 x the per-core batch size: 48 for its 12 queries "
            "per TPU core."
        },
    )
    keep_freed_host_memory: bool = field(default=True, metadata={"help": "See TCTTrainingArguments."})
    skip_nonfinite_steps: bool = field(default=False, metadata={"help": "See TCTTrainingArguments."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Kept False (see TCTTrainingArguments)."})

    def __post_init__(self):
        super().__post_init__()
        keep_passages_whole(self)
        if not self.logit_scale > 0:
            raise ValueError(f"logit_scale must be > 0, got {self.logit_scale!r}")
