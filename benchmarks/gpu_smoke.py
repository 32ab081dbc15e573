"""GPU smoke check (run by gpu_check.sh): the trainer places the frozen teacher on the GPU and trains in bf16, and the
student's GPU vectors (fp32 and bf16 autocast) agree with its CPU vectors, and the unpadded BERT forward equals the
padded one on the GPU (SDPA, and flash_attention_2 where installed). Prints one JSON object."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from datasets import Dataset  # noqa: E402
from utils import WORDS, write_tiny_bert  # noqa: E402

from tct_hf import ColBERTModel, TCTModel  # noqa: E402
from tct_hf.data import TCTCollator  # noqa: E402
from tct_hf.training import TCTTrainer, TCTTrainingArguments  # noqa: E402
from tct_hf.training.teacher import resolve_teacher_dtype  # noqa: E402


def unpadded_check(root: Path) -> dict:
    """Max |unpadded - padded| on attended positions of a random BERT, fp32 (TF32 off) and bf16 weights."""
    from transformers import BertModel

    from tct_hf.bert_unpadded import unpad, unpadded_last_hidden_state

    write_tiny_bert(root / "unpadded", seed=4)
    lengths = torch.tensor([50, 3, 77, 12, 64, 77, 20, 33])
    mask = (torch.arange(80)[None, :] < lengths[:, None]).long().cuda()
    ids = torch.randint(5, 200, mask.shape, device="cuda") * mask
    result = {}
    torch.backends.cuda.matmul.allow_tf32 = False
    implementations = ["sdpa"]
    try:
        import flash_attn  # noqa: F401

        implementations.append("flash_attention_2")
    except ImportError:
        result["flash_attention_2"] = "not installed"
    for implementation in implementations:
        for dtype in (torch.float32, torch.bfloat16):
            if implementation == "flash_attention_2" and dtype == torch.float32:
                continue  # flash kernels run fp16/bf16 only
            bert = BertModel.from_pretrained(root / "unpadded", dtype=dtype, attn_implementation=implementation)
            bert = bert.cuda().eval()
            with torch.inference_mode():
                reference = BertModel.from_pretrained(root / "unpadded", dtype=dtype, attn_implementation="sdpa")
                padded = reference.cuda().eval()(input_ids=ids, attention_mask=mask).last_hidden_state
                unpadded = unpadded_last_hidden_state(bert, unpad(ids, mask))
            difference = (unpadded - padded)[mask.bool()].abs().max()
            result[f"{implementation}_{str(dtype).replace('torch.', '')}_max_abs_diff"] = float(difference)
    return result


def main() -> dict:
    assert torch.cuda.is_available(), "no GPU"
    root = Path(tempfile.mkdtemp())
    student_dir = write_tiny_bert(root / "student", seed=1)
    teacher_dir = write_tiny_bert(root / "teacher", seed=2)
    student = TCTModel.from_pretrained(student_dir)
    teacher = ColBERTModel.from_pretrained(teacher_dir, convention="tct", dim=16)
    texts = [" ".join(WORDS[i : i + 9]) for i in range(0, len(WORDS) - 9, 3)]
    cpu = student.encode_passages(texts)
    student.to("cuda")
    gpu = student.encode_passages(texts)
    gpu_bf16 = student.encode_passages(texts, autocast_dtype=torch.bfloat16)
    rows = [{"query": " ".join(t.split()[:3]), "positive": t, "negatives": [texts[(i + 7) % len(texts)]]}
            for i, t in enumerate(texts)]  # fmt: skip
    args = TCTTrainingArguments(
        output_dir=str(root / "out"), max_steps=20, per_device_train_batch_size=16, learning_rate=1e-3, bf16=True,
        report_to="none", save_strategy="no", logging_steps=5, disable_tqdm=True, query_max_length=8,
        passage_max_length=16,
    )  # fmt: skip
    collator = TCTCollator(student, teacher, query_max_length=8, passage_max_length=16)
    trainer = TCTTrainer(model=student, teacher=teacher, args=args, train_dataset=Dataset.from_list(rows),
                         data_collator=collator)  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "device": torch.cuda.get_device_name(0),
        "unpadded_vs_padded": unpadded_check(root),
        "max_abs_diff_gpu_fp32_vs_cpu": float(abs(gpu - cpu).max()),
        "max_abs_diff_gpu_bf16_vs_cpu": float(abs(gpu_bf16 - cpu).max()),
        "teacher_device": str(next(trainer.teacher.parameters()).device),
        "teacher_autocast_dtype": str(resolve_teacher_dtype(args.teacher_autocast_dtype, torch.device("cuda"))),
        "losses": losses,
        "train_seconds": round(time.perf_counter() - start, 2),
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
