"""Training: TCT-ColBERT distillation (`TCTTrainer`) and ColBERT teacher fine-tuning (`ColBERTTrainer`)."""

from .arguments import PAPER_DEFAULTS, ColBERTTrainingArguments, TCTTrainingArguments
from .colbert_trainer import ColBERTTrainer
from .data_arguments import DataArguments, TrainingData, load_training_data
from .retrieval_eval import DevSet, RetrievalEvaluationCallback, evaluate_student, evaluate_teacher
from .script_arguments import demo_training_defaults, fast_bf16, parse_script_arguments
from .shutdown import end_training
from .teacher_finetuning import fine_tune_teacher
from .trainer import TCTTrainer

__all__ = [
    "DataArguments",
    "TrainingData",
    "demo_training_defaults",
    "fast_bf16",
    "fine_tune_teacher",
    "load_training_data",
    "parse_script_arguments",
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
