"""Fine-tune a ColBERT teacher (softmax cross-entropy over MaxSim scores) before distilling it with train_tct.py.

    accelerate launch examples/train_colbert.py                       # embedded MS MARCO sample, MiniLM backbone
    accelerate launch examples/train_colbert.py --backbone bert-base-uncased --train_triples triples.train.small.tsv \
        --convention stanford --per_device_train_batch_size 32 --max_steps 200000 --output_dir outputs/colbert

Steps in `main()`: 1. arguments  2. data (the same sources as train_tct.py)  3. teacher  4. metrics before
5. fine-tuning  6. metrics after, save.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

import torch
from transformers import set_seed

from tct_hf import ColBERTModel
from tct_hf.backbones import default_backbone
from tct_hf.data import TCTCollator
from tct_hf.training import (
    ColBERTTrainer,
    ColBERTTrainingArguments,
    DataArguments,
    demo_training_defaults,
    end_training,
    evaluate_teacher,
    load_training_data,
    parse_script_arguments,
)


@dataclass
class TeacherArguments:
    backbone: str | None = field(
        default=None, metadata={"help": "BERT checkpoint (dir or Hub id) or an existing ColBERT to continue from."}
    )
    convention: str = field(default="tct", metadata={"help": "tct or stanford (see ColBERTConfig)."})
    dim: int = field(default=128, metadata={"help": "Token embedding size of a new projection."})


COLBERT_DEMO_DEFAULTS = demo_training_defaults(
    output_dir="outputs/colbert-demo", max_steps=60, learning_rate=5e-5, dev_metrics=["nDCG@10", "RR@10", "R@100"]
)


def main(argv: list[str] | None = None) -> dict:
    # 1. Arguments.
    argv = sys.argv[1:] if argv is None else argv
    dataclass_types = (TeacherArguments, DataArguments, ColBERTTrainingArguments)
    teacher_args, data_args, args = parse_script_arguments(argv, dataclass_types, COLBERT_DEMO_DEFAULTS)
    set_seed(args.seed)
    # 2. Data.
    data = load_training_data(data_args, args.seed, args.num_negatives)
    # 3. Teacher: a new projection on a BERT backbone, or an existing ColBERT checkpoint.
    backbone = teacher_args.backbone or default_backbone(instead="pass --backbone")
    teacher = ColBERTModel.from_pretrained(backbone, convention=teacher_args.convention, dim=teacher_args.dim)
    autocast_dtype = torch.bfloat16 if args.bf16 else None
    # 4. Metrics before.
    results = {}
    if data.dev is not None and args.should_save:
        results["teacher_before"] = evaluate_teacher(teacher, data.dev, autocast_dtype=autocast_dtype)
    # 5. Fine-tuning.
    collator = TCTCollator.from_training_args(args, teacher=teacher)
    trainer = ColBERTTrainer(model=teacher, args=args, train_dataset=data.train, data_collator=collator)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    # 6. Metrics after, save.
    if args.should_save:
        if data.dev is not None:
            results["teacher_after"] = evaluate_teacher(teacher, data.dev, autocast_dtype=autocast_dtype)
        trainer.save_model(args.output_dir)
        print(json.dumps(results, indent=2), flush=True)
    end_training(trainer)
    return results


if __name__ == "__main__":
    main()
