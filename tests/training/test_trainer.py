"""TCTTrainer: the loss it computes, that training moves the student and never the teacher, checkpoints, resume."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from conftest import make_examples
from datasets import Dataset
from safetensors import safe_open

from tct_hf import ColBERTModel, TCTModel
from tct_hf.data import TCTCollator
from tct_hf.training import TCTTrainer, TCTTrainingArguments


def load_pair(tiny_dirs):
    student_dir, teacher_dir = tiny_dirs
    student = TCTModel.from_pretrained(student_dir)
    teacher = ColBERTModel.from_pretrained(teacher_dir)
    return student, teacher


def make_args(output_dir, **overrides) -> TCTTrainingArguments:
    kwargs = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        max_steps=6,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=7,
        dataloader_drop_last=True,
        query_max_length=8,
        passage_max_length=16,
        num_negatives=1,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return TCTTrainingArguments(**kwargs)


def make_trainer(tiny_dirs, output_dir, examples, **overrides):
    student, teacher = load_pair(tiny_dirs)
    args = make_args(output_dir, **overrides)
    collator = TCTCollator(student, teacher, query_max_length=8, passage_max_length=16, num_negatives=1, seed=3)
    trainer = TCTTrainer(
        model=student,
        teacher=teacher,
        args=args,
        train_dataset=Dataset.from_list(examples),
        eval_dataset=Dataset.from_list(examples),
        data_collator=collator,
    )
    return trainer, student, teacher, collator


def teacher_pair_score(teacher, query: str, passage: str) -> float:
    """MaxSim of one pair, each side tokenized alone (no batch padding) at the collator's lengths."""
    q = teacher.tokenize_queries([query], max_length=8 + 4)
    d = teacher.tokenize_passages([passage], max_length=16 + 4)
    with torch.no_grad():
        out = teacher(
            query_input_ids=q["input_ids"],
            query_attention_mask=q["attention_mask"],
            passage_input_ids=d["input_ids"],
            passage_attention_mask=d["attention_mask"],
        )
    return float(out.scores[0, 0])


def test_in_batch_loss_equals_hand_kl(tiny_dirs, tmp_path):
    examples = make_examples(4, num_negatives=1)
    trainer, student, teacher, collator = make_trainer(tiny_dirs, tmp_path, examples)
    student.eval()
    batch = collator(examples)
    loss = trainer.compute_loss(student, batch)

    # Independent reference: embeddings via the public encode API, teacher MaxSim by a loop over pairs, F.kl_div.
    passages = [e["positive"] for e in examples] + [e["negatives"][0] for e in examples]
    queries = [e["query"] for e in examples]
    q = torch.from_numpy(student.encode_queries(queries, max_length=8 + 4))
    p = torch.from_numpy(student.encode_passages(passages, max_length=16 + 4))
    student_scores = q @ p.T
    teacher_scores = torch.tensor(
        [[teacher_pair_score(teacher, query, passage) for passage in passages] for query in queries]
    )
    teacher_scores = teacher_scores.view(4, 8)
    expected = F.kl_div(
        F.log_softmax(student_scores, dim=1), F.softmax(teacher_scores / 0.25, dim=1), reduction="batchmean"
    )
    assert torch.allclose(loss.detach(), expected, atol=1e-4), (loss.item(), expected.item())


def test_pairwise_and_no_teacher_modes_match_hand_formulas(tiny_dirs, tmp_path):
    examples = make_examples(4, num_negatives=1)
    for mode in ("pairwise", "none"):
        trainer, student, teacher, collator = make_trainer(tiny_dirs, tmp_path / mode, examples, kd_mode=mode)
        student.eval()
        batch = collator(examples)
        loss = trainer.compute_loss(student, batch)
        q = student(input_ids=batch["query_input_ids"], attention_mask=batch["query_attention_mask"]).embeddings
        p = student(input_ids=batch["passage_input_ids"], attention_mask=batch["passage_attention_mask"]).embeddings
        scores = q @ p.T  # [4, 8]
        if mode == "none":
            expected = F.cross_entropy(scores, torch.arange(4))
        else:
            own = torch.stack([scores.diagonal(), scores[torch.arange(4), 4 + torch.arange(4)]], dim=1)
            t = teacher(
                query_input_ids=batch["teacher_query_input_ids"],
                query_attention_mask=batch["teacher_query_attention_mask"],
                passage_input_ids=batch["teacher_passage_input_ids"],
                passage_attention_mask=batch["teacher_passage_attention_mask"],
            ).scores
            t_own = torch.stack([t.diagonal(), t[torch.arange(4), 4 + torch.arange(4)]], dim=1)
            expected = F.kl_div(F.log_softmax(own, 1), F.softmax(t_own / 0.25, 1), reduction="batchmean")
        assert torch.allclose(loss.detach(), expected.detach(), atol=1e-5), (mode, loss.item(), expected.item())


def test_training_lowers_loss_and_never_touches_the_teacher(tiny_dirs, tmp_path):
    examples = make_examples(8)
    trainer, student, teacher, _ = make_trainer(tiny_dirs, tmp_path, examples, max_steps=30, learning_rate=3e-3)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    loss_before = trainer.evaluate()["eval_loss"]
    trainer.train()
    loss_after = trainer.evaluate()["eval_loss"]
    assert loss_after < loss_before * 0.8, (loss_before, loss_after)
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())
    assert not all(torch.equal(student_before[k], v) for k, v in student.state_dict().items())
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


def test_checkpoint_holds_the_student_only(tiny_dirs, tmp_path):
    examples = make_examples(8)
    trainer, *_ = make_trainer(tiny_dirs, tmp_path, examples, max_steps=2, save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = tmp_path / "checkpoint-2"
    with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as weights:
        keys = list(weights.keys())
    assert keys and all(key.startswith("bert.") for key in keys), keys[:5]
    assert not any("linear" in key for key in keys)
    reloaded = TCTModel.from_pretrained(checkpoint)
    assert reloaded.tokenizer is not None
    assert (checkpoint / "modules.json").is_file()  # loads with sentence-transformers too


def test_resume_equals_uninterrupted_run(tiny_dirs, tmp_path):
    examples = make_examples(12, num_negatives=3)  # 3 negatives, 1 drawn per step: the draw must resume too
    full, full_student, *_ = make_trainer(
        tiny_dirs, tmp_path / "full", examples, max_steps=6, save_strategy="steps", save_steps=3
    )
    full.train()
    resumed, resumed_student, *_ = make_trainer(tiny_dirs, tmp_path / "resumed", examples, max_steps=6)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    for (name, a), (_, b) in zip(full_student.state_dict().items(), resumed_student.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def without_dropout(model) -> None:
    """Dropout masks depend on the micro-batch shapes; the comparison below is about loss scaling only."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def test_gradient_accumulation_matches_one_big_batch(tiny_dirs, tmp_path):
    """Pairwise KD has no in-batch coupling, so 2 x 2 accumulated examples must equal one batch of 4 (SGD)."""
    examples = make_examples(4, num_negatives=1)
    common = dict(kd_mode="pairwise", max_steps=1, optim="sgd", learning_rate=0.5, max_grad_norm=0.0, warmup_steps=0)
    big, big_student, *_ = make_trainer(tiny_dirs, tmp_path / "big", examples, per_device_train_batch_size=4, **common)
    without_dropout(big_student)
    big.train()
    accumulated, acc_student, *_ = make_trainer(
        tiny_dirs, tmp_path / "acc", examples, per_device_train_batch_size=2, gradient_accumulation_steps=2, **common
    )
    without_dropout(acc_student)
    accumulated.train()
    for model in (big_student, acc_student):
        model.eval()
    for (name, a), (_, b) in zip(big_student.state_dict().items(), acc_student.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name
