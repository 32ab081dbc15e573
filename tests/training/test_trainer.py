"""TCTTrainer: the loss it computes, that training moves the student and never the teacher, checkpoints, resume."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import make_examples
from datasets import Dataset
from safetensors import safe_open

from tct_hf import ColBERTModel, TCTModel
from tct_hf.data import TCTCollator
from tct_hf.losses import InBatchKDLoss, InBatchNegativesLoss, PairwiseKDLoss
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
    collator = TCTCollator(
        student, teacher, query_max_length=8, passage_max_length=16, num_negatives=args.num_negatives, seed=3
    )
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


def student_and_teacher_matrices(student, teacher, batch):
    """Student dot products and teacher MaxSim of every query against every passage of the batch: [B, N] each."""
    q = student(input_ids=batch["query_input_ids"], attention_mask=batch["query_attention_mask"]).embeddings
    p = student(input_ids=batch["passage_input_ids"], attention_mask=batch["passage_attention_mask"]).embeddings
    with torch.no_grad():
        t = teacher(
            query_input_ids=batch["teacher_query_input_ids"],
            query_attention_mask=batch["teacher_query_attention_mask"],
            passage_input_ids=batch["teacher_passage_input_ids"],
            passage_attention_mask=batch["teacher_passage_attention_mask"],
        ).scores
    return (q @ p.T).detach().double(), t.double()


def hand_kd(student_rows, teacher_rows, temperature, student_temperature, ce_weight):
    """Mean over rows of sum_j p_j (log p_j - log q_j) + ce_weight * -log q_0 (the positive in column 0)."""
    total = 0.0
    for s, t in zip(student_rows, teacher_rows):
        log_p = t / temperature - torch.logsumexp(t / temperature, 0)
        log_q = s / student_temperature - torch.logsumexp(s / student_temperature, 0)
        total += float((log_p.exp() * (log_p - log_q)).sum()) - ce_weight * float(log_q[0])
    return total / len(student_rows)


def rows_positive_first(matrix, columns_per_row):
    return [matrix[i, columns] for i, columns in enumerate(columns_per_row)]


PAPER_KD = {"temperature": 0.25, "student_temperature": 1.0, "ce_weight": 0.0}


@pytest.mark.parametrize("kd_mode", ["in_batch", "pairwise"])
@pytest.mark.parametrize("changed", [{"temperature": 0.5}, {"student_temperature": 2.0}, {"ce_weight": 0.3}])
def test_kd_loss_reads_temperatures_and_ce_weight_from_the_arguments(tiny_dirs, tmp_path, kd_mode, changed):
    examples = make_examples(4, num_negatives=1)
    trainer, student, teacher, collator = make_trainer(
        tiny_dirs, tmp_path, examples, kd_mode=kd_mode, teacher_autocast_dtype="float32", **changed
    )
    student.eval()
    batch = collator(examples)
    loss = float(trainer.compute_loss(student, batch).detach())
    scores, teacher_scores = student_and_teacher_matrices(student, teacher, batch)
    if kd_mode == "in_batch":  # every passage, the positive moved to the front for hand_kd
        columns = [[i] + [j for j in range(8) if j != i] for i in range(4)]
    else:  # own positive and negative: columns i and 4 + i
        columns = [[i, 4 + i] for i in range(4)]
    student_rows, teacher_rows = rows_positive_first(scores, columns), rows_positive_first(teacher_scores, columns)
    expected = hand_kd(student_rows, teacher_rows, **{**PAPER_KD, **changed})
    at_paper_values = hand_kd(student_rows, teacher_rows, **PAPER_KD)
    assert abs(loss - expected) < 1e-5, (loss, expected)
    assert abs(expected - at_paper_values) > 1e-3, "the changed argument must change the loss for this test to bite"


def test_no_teacher_loss_reads_the_student_temperature(tiny_dirs, tmp_path):
    examples = make_examples(4, num_negatives=1)
    trainer, student, teacher, collator = make_trainer(
        tiny_dirs, tmp_path, examples, kd_mode="none", student_temperature=2.0
    )
    student.eval()
    batch = collator(examples)
    loss = float(trainer.compute_loss(student, batch).detach())
    scores, _ = student_and_teacher_matrices(student, teacher, batch)
    expected = float(sum(torch.logsumexp(scores[i] / 2.0, 0) - scores[i, i] / 2.0 for i in range(4)) / 4)
    untempered = float(sum(torch.logsumexp(scores[i], 0) - scores[i, i] for i in range(4)) / 4)
    assert abs(loss - expected) < 1e-5 and abs(expected - untempered) > 1e-3, (loss, expected, untempered)


def test_pairwise_kd_drops_a_negative_that_copies_the_own_positive(tiny_dirs, tmp_path):
    """Query 0's first negative is its own positive (dropped); query 1's first negative is query 0's positive (kept:
    pairwise KD never looks at other queries); query 2 repeats a negative (counted once)."""
    examples = make_examples(3, num_negatives=2)
    examples[0]["negatives"][0] = examples[0]["positive"]
    examples[1]["negatives"][0] = examples[0]["positive"]
    examples[2]["negatives"][1] = examples[2]["negatives"][0]
    own = [[0, 3, 4], [1, 5, 6], [2, 7, 8]]  # positive i, then negatives 3 + 2i + k
    kept = [[0, 4], [1, 5, 6], [2, 7]]
    losses = {}
    for masked in (True, False):
        trainer, student, teacher, collator = make_trainer(
            tiny_dirs,
            tmp_path / str(masked),
            examples,
            kd_mode="pairwise",
            teacher_autocast_dtype="float32",
            num_negatives=2,
            mask_duplicate_passages=masked,
        )
        student.eval()
        batch = collator(examples)
        assert batch["passage_ids"][3] == batch["passage_ids"][0] == batch["passage_ids"][5]
        losses[masked] = float(trainer.compute_loss(student, batch).detach())
        scores, teacher_scores = student_and_teacher_matrices(student, teacher, batch)
        columns = kept if masked else own
        expected = hand_kd(
            rows_positive_first(scores, columns), rows_positive_first(teacher_scores, columns), **PAPER_KD
        )
        assert abs(losses[masked] - expected) < 1e-5, (masked, losses[masked], expected)
        # The trainer's loss is PairwiseKDLoss on the same embeddings and the teacher's own pairs.
        q = student(input_ids=batch["query_input_ids"], attention_mask=batch["query_attention_mask"]).embeddings
        p = student(input_ids=batch["passage_input_ids"], attention_mask=batch["passage_attention_mask"]).embeddings
        pairs = torch.stack([teacher_scores[i, columns] for i, columns in enumerate(own)]).float()
        direct = PairwiseKDLoss(mask_duplicates=masked)(q, p, pairs, passage_ids=batch["passage_ids"])
        assert abs(float(direct.detach()) - losses[masked]) < 1e-5
    assert abs(losses[True] - losses[False]) > 1e-4, losses  # 10x the tolerance: the mask matters here


def test_trainers_hold_loss_objects_built_from_their_arguments(tiny_dirs, tmp_path):
    examples = make_examples(4, num_negatives=1)
    expected = {"in_batch": InBatchKDLoss, "pairwise": PairwiseKDLoss, "none": InBatchNegativesLoss}
    for mode, loss_class in expected.items():
        trainer, *_ = make_trainer(tiny_dirs, tmp_path / mode, examples, kd_mode=mode, mask_duplicate_passages=False)
        assert type(trainer.loss) is loss_class and trainer.loss.mask_duplicates is False
