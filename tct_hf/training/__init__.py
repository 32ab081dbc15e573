"""Training: TCT-ColBERT distillation (`TCTTrainer`) and ColBERT teacher fine-tuning (`ColBERTTrainer`)."""

from .arguments import PAPER_DEFAULTS, ColBERTTrainingArguments, TCTTrainingArguments
from .colbert_trainer import ColBERTTrainer
from .retrieval_eval import DevSet, RetrievalEvaluationCallback, evaluate_student, evaluate_teacher
from .shutdown import end_training
from .trainer import TCTTrainer

__all__ = [
    "PAPER_DEFAULTS",
    "ColBERTTrainer",
    "ColBERTTrainingArguments",
    "DevSet",
    "RetrievalEvaluationCallback",
    "TCTTrainer",
    "end_training",
    "TCTTrainingArguments",
    "evaluate_student",
    "evaluate_teacher",
]
