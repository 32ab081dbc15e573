"""InBatchKDLoss inside sentence-transformers' own machinery: SentenceTransformerTrainer with its training arguments
(NO_DUPLICATES batches, bf16, gradient accumulation), an evaluator, the generated model card and push_to_hub."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from datasets import Dataset
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
from sentence_transformers.base.sampler import BatchSamplers
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
from st_helpers import features_of, load_teacher, make_rows, make_student
from st_helpers import st_dirs as dirs
from torch.utils.data import BatchSampler, SequentialSampler

from tct_hf.st import InBatchKDLoss


def trainer_for(student, teacher, args, rows, **kwargs) -> SentenceTransformerTrainer:
    return SentenceTransformerTrainer(
        model=student,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=InBatchKDLoss(student, teacher, teacher_autocast_dtype="float32"),
        **kwargs,
    )


def evaluator_for(rows) -> InformationRetrievalEvaluator:
    queries = {str(i): row["query"] for i, row in enumerate(rows)}
    corpus = {f"d{i}": row["positive"] for i, row in enumerate(rows)}
    corpus.update({f"n{i}": row["negative_1"] for i, row in enumerate(rows)})
    relevant = {str(i): {f"d{i}"} for i in range(len(rows))}
    return InformationRetrievalEvaluator(queries, corpus, relevant, name="sample", show_progress_bar=False)


class RecordingApi:
    """Stands in for huggingface_hub.HfApi inside SentenceTransformer.push_to_hub: keeps the uploaded files."""

    uploads: list[dict[str, bytes]] = []

    def __init__(self, token=None):
        pass

    def create_repo(self, repo_id, **kwargs):
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def upload_folder(self, repo_id, folder_path, **kwargs):
        root = Path(folder_path)
        RecordingApi.uploads.append({str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()})
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


def test_trainer_arguments_evaluator_card_save_and_push(tmp_path, monkeypatch):
    st_dirs = dirs()
    teacher = load_teacher()
    torch.manual_seed(0)
    student = make_student(st_dirs["student"])
    before = {k: v.clone() for k, v in student.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    rows = make_rows(16, num_negatives=2)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=2,
        learning_rate=1e-3,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        bf16=True,  # CPU autocast runs bf16 on every CPU (natively or emulated)
        use_cpu=True,
        eval_strategy="steps",
        eval_steps=2,
        per_device_eval_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = trainer_for(
        student, teacher, args, rows, eval_dataset=Dataset.from_list(rows[:8]), evaluator=evaluator_for(rows[:8])
    )
    trainer.train()
    logs = trainer.state.log_history
    train_losses = [entry["loss"] for entry in logs if "loss" in entry]
    assert len(train_losses) == 2 and all(loss > 0 and loss == loss for loss in train_losses)
    evaluation = next(entry for entry in logs if "eval_loss" in entry)
    assert evaluation["eval_loss"] > 0 and "eval_sample_cosine_ndcg@10" in evaluation
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert all(torch.equal(teacher_before[k], v) for k, v in teacher.state_dict().items())
    assert not teacher.training

    out = tmp_path / "saved"
    trainer.save_model(str(out))
    card = (out / "README.md").read_text()
    assert "InBatchKDLoss" in card and "lin-etal-2021-batch" in card and "In-Batch Negatives for Knowledge" in card
    weights = {key for path in out.rglob("*.safetensors") for key in load_file(str(path))}
    # exactly the student's weights: no teacher tensor travels with it
    assert weights == {key.removeprefix("0.model.") for key in before}
    reloaded = SentenceTransformer(str(out), device="cpu")
    trained = student.state_dict()
    assert all(torch.equal(value, trained[key]) for key, value in reloaded.state_dict().items())
    assert reloaded.similarity_fn_name == "cosine" and reloaded.encode(["heat"]).shape == (1, 32)
    modules = json.loads((out / "modules.json").read_text())
    assert all(module["type"].startswith("sentence_transformers.") for module in modules)

    monkeypatch.setattr("sentence_transformers.base.model.HfApi", RecordingApi)
    RecordingApi.uploads.clear()
    student.push_to_hub("someone/tiny-st-kd", replace_model_card=True)
    uploaded = RecordingApi.uploads[-1]
    assert "model.safetensors" in uploaded and "modules.json" in uploaded
    pushed_card = uploaded["README.md"].decode()
    assert "InBatchKDLoss" in pushed_card and "lin-etal-2021-batch" in pushed_card


class InOrderTrainer(SentenceTransformerTrainer):
    """Batches in dataset order, so each micro-batch is known."""

    def get_batch_sampler(self, dataset, batch_size, drop_last, valid_label_columns=None, generator=None, seed=0):
        return BatchSampler(SequentialSampler(range(len(dataset))), batch_size=batch_size, drop_last=drop_last)


def test_gradient_accumulation_averages_the_micro_batches(tmp_path):
    """2 micro-batches of 2 with accumulation = one SGD step on the mean of the two micro-batch losses' gradients."""
    st_dirs = dirs()
    teacher = load_teacher()
    rows = make_rows(4, num_negatives=1)
    torch.manual_seed(0)
    reference = make_student(st_dirs["student"])
    loss_fn = InBatchKDLoss(reference, teacher, teacher_autocast_dtype="float32")
    for half in (rows[:2], rows[2:]):
        (loss_fn(features_of(reference, half)) / 2).backward()
    expected = {n: p.detach() - p.grad for n, p in reference.named_parameters() if p.grad is not None}

    torch.manual_seed(0)
    student = make_student(st_dirs["student"])
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        use_cpu=True,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = InOrderTrainer(
        model=student,
        args=args,
        train_dataset=Dataset.from_list(rows),
        loss=InBatchKDLoss(student, teacher, teacher_autocast_dtype="float32"),
    )
    trainer.train()
    params = dict(student.named_parameters())
    assert len(expected) > 10
    for name, value in expected.items():
        torch.testing.assert_close(params[name].detach(), value, atol=2e-6, rtol=1e-5, msg=name)
