"""The HN+ pipeline's configuration: one dataclass (YAML/JSON/flags through `HfArgumentParser`) and its checks.

Stage kinds, in the only order they may run: ``warmup`` (teacher on BM25 negatives unless one is given, then the
student distilled from it on BM25 negatives), ``mine`` (encode the training collection with the latest student, mine
its top ``mine_depth``, optionally teacher-filtered), ``teacher`` (fine-tune the latest teacher on the mined
negatives), ``student`` (distil the latest student from the latest teacher on HN or HN+), ``final`` (encode the dev
collection with the last student, search, evaluate). ``refresh_rounds`` repeats ``mine``/``teacher``/``student``
(those listed in ``stages``) after the first ``student``; the paper's "2x TCT HN+" is one refresh round.
``documents`` (automatic for a msmarco-docs.tsv) reads both collections as FirstP passages, as the training scripts do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STAGE_KINDS = ("warmup", "mine", "teacher", "student", "final")
REFRESHED_KINDS = ("mine", "teacher", "student")
NEGATIVE_SETS = ("hn+", "hn")


class PipelineConfigError(ValueError):
    """A configuration the pipeline refuses before any work starts (the message names the field and the fix)."""


@dataclass
class PipelineConfig:
    output_dir: str = field(default="outputs/tct-hn-plus", metadata={"help": "Folder of the stages and report.json."})
    stages: list[str] = field(
        default_factory=lambda: list(STAGE_KINDS),
        metadata={"help": f"Stages to run, in order, from {STAGE_KINDS}."},
    )
    refresh_rounds: int = field(
        default=0, metadata={"help": "Extra mine/teacher/student rounds after the first student (paper's 2x: 1)."}
    )
    negatives: str = field(
        default="hn+", metadata={"help": "Student examples: hn+ (BM25 + mined negatives) or hn (mined only)."}
    )
    # Models.
    student_model: str | None = field(
        default=None, metadata={"help": "Student backbone (TCT / BERT dir or Hub id). Default: MiniLM-L6."}
    )
    teacher_model: str | None = field(
        default=None, metadata={"help": "ColBERT teacher to start from. Default: fine-tune one in the warm-up."}
    )
    warmup_student: str | None = field(
        default=None, metadata={"help": "A warm-up student to start from when 'warmup' is not among the stages."}
    )
    # Data (default: the embedded MS MARCO sample).
    collection: str | None = field(default=None, metadata={"help": "Training collection (mined from)."})
    train_queries: str | None = field(default=None, metadata={"help": "Training queries, qid<TAB>text."})
    train_qrels: str | None = field(default=None, metadata={"help": "Training qrels."})
    dev_collection: str | None = field(default=None, metadata={"help": "Dev collection (default: --collection)."})
    dev_queries: str | None = field(default=None, metadata={"help": "Dev queries every stage is evaluated on."})
    dev_qrels: str | None = field(default=None, metadata={"help": "Dev qrels."})
    documents: bool = field(
        default=False,
        metadata={
            "help": "Read the collections as documents (id/title/text TSV or JSONL; automatic for msmarco-docs.tsv): "
            "FirstP text = title + body, cut to passage_max_length; dev metrics RR@100 first."
        },
    )
    min_relevance: int = field(default=2, metadata={"help": "Grade a BM25 example's positive needs."})
    bm25_depth: int = field(default=200, metadata={"help": "BM25 negatives come from this top."})
    # Mining.
    mine_depth: int = field(default=200, metadata={"help": "Mined negatives come from the student's top DEPTH."})
    teacher_margin: float | None = field(
        default=None, metadata={"help": "Teacher-filtered mining with this margin (None: no filter)."}
    )
    teacher_margin_type: str = field(default="absolute", metadata={"help": "absolute or relative."})
    # Training.
    teacher_steps: int = field(default=30, metadata={"help": "Steps of the warm-up teacher (none if given)."})
    warmup_student_steps: int = field(default=40, metadata={"help": "Steps of the warm-up student."})
    hn_teacher_steps: int = field(default=20, metadata={"help": "Steps of each teacher stage."})
    hn_student_steps: int = field(default=30, metadata={"help": "Steps of each student stage."})
    batch_size: int = field(default=16, metadata={"help": "Queries per batch (student and teacher)."})
    learning_rate: float = field(default=3e-5, metadata={"help": "Student learning rate."})
    teacher_learning_rate: float = field(default=5e-5, metadata={"help": "Teacher learning rate."})
    teacher_dim: int = field(default=128, metadata={"help": "Token embedding size of a new teacher."})
    temperature: float = field(default=0.25, metadata={"help": "KD temperature of the teacher (paper: 0.25)."})
    num_negatives: int = field(default=1, metadata={"help": "Negatives per example (BM25 and mined)."})
    query_max_length: int = field(default=32, metadata={"help": "Query tokens after the prefix."})
    passage_max_length: int = field(default=150, metadata={"help": "Passage tokens after the prefix."})
    save_steps: int | None = field(
        default=None, metadata={"help": "Trainer checkpoints every N steps, so an interrupted stage resumes."}
    )
    logging_steps: int = field(default=20, metadata={"help": "Trainer logging interval."})
    encode_batch_size: int = field(default=64, metadata={"help": "Texts per forward pass when encoding."})
    evaluate_stages: bool = field(
        default=True, metadata={"help": "Evaluate each trained model on the dev queries (else the final one only)."}
    )
    evaluate_teacher: bool = field(default=True, metadata={"help": "Report the teachers' dev metrics too."})
    seed: int = field(default=42, metadata={"help": "Seed of training, sampling and mining."})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 autocast (default: where the hardware has it)."})
    use_cpu: bool | None = field(default=None, metadata={"help": "Train on the CPU (default: when no GPU)."})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_stages(config: PipelineConfig) -> list[tuple[str, str, int]]:
    """``(folder name, kind, round)`` of every stage to run: ``1-warmup, 2-mine, 3-teacher, 4-student, 5-mine-r1,
    ..., N-final``. Raises `PipelineConfigError` on an unknown or repeated stage, a wrong order, or a negative
    ``refresh_rounds``."""
    stages = [config.stages] if isinstance(config.stages, str) else list(config.stages)
    unknown = [name for name in stages if name not in STAGE_KINDS]
    if unknown:
        raise PipelineConfigError(f"stages: unknown stage {unknown[0]!r}; the stages are {', '.join(STAGE_KINDS)}")
    if len(set(stages)) != len(stages) or stages != sorted(stages, key=STAGE_KINDS.index):
        raise PipelineConfigError(
            f"stages: {stages} must list each stage once, in the order {', '.join(STAGE_KINDS)} "
            "(refresh rounds repeat mine/teacher/student by themselves: use refresh_rounds)"
        )
    if not isinstance(config.refresh_rounds, int) or config.refresh_rounds < 0:
        raise PipelineConfigError(f"refresh_rounds must be an integer >= 0, got {config.refresh_rounds!r}")
    if config.refresh_rounds and "student" not in stages:
        raise PipelineConfigError("refresh_rounds > 0 needs the 'student' stage (a round ends with a new student)")
    sequence = [(kind, 0) for kind in stages if kind != "final"]
    for round_ in range(1, config.refresh_rounds + 1):
        sequence += [(kind, round_) for kind in REFRESHED_KINDS if kind in stages]
    if "final" in stages:
        sequence.append(("final", 0))
    return [
        (f"{number}-{kind}" + (f"-r{round_}" if round_ else ""), kind, round_)
        for number, (kind, round_) in enumerate(sequence, start=1)
    ]


def check_config(config: PipelineConfig) -> None:
    """Field checks that need no file: choices, positive counts (the inputs are checked by the runner)."""
    if config.negatives not in NEGATIVE_SETS:
        raise PipelineConfigError(f"negatives={config.negatives!r} is not one of {NEGATIVE_SETS}")
    if config.teacher_margin_type not in ("absolute", "relative"):
        raise PipelineConfigError(f"teacher_margin_type={config.teacher_margin_type!r}: use absolute or relative")
    if config.teacher_margin is not None and not config.teacher_margin >= 0:
        raise PipelineConfigError(f"teacher_margin must be >= 0 (or None for no filter), got {config.teacher_margin}")
    for name in ("teacher_steps", "warmup_student_steps", "hn_teacher_steps", "hn_student_steps", "batch_size",
                 "num_negatives", "mine_depth", "bm25_depth", "encode_batch_size"):  # fmt: skip
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise PipelineConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if config.save_steps is not None and config.save_steps < 1:
        raise PipelineConfigError(f"save_steps must be >= 1 or None, got {config.save_steps}")
    if Path(config.output_dir).exists() and not Path(config.output_dir).is_dir():
        raise PipelineConfigError(f"output_dir {config.output_dir} exists and is not a folder")
