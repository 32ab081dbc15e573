"""TCTTrainer with gradient_cache_chunk_size: the gradients of the uncached step, in every kd_mode."""

from __future__ import annotations

import pytest
import torch
from conftest import make_examples
from test_trainer import make_args, make_trainer, without_dropout

from tct_hf.losses import chunk_ranges

MODES = ["in_batch", "pairwise", "none"]


def step_gradients(trainer, student, batch) -> tuple[float, dict[str, torch.Tensor]]:
    student.zero_grad(set_to_none=True)
    loss = trainer.compute_loss(student, batch)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in student.named_parameters() if p.grad is not None}
    student.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def assert_same_gradients(got, expected, atol=1e-5):
    assert got.keys() == expected.keys() and len(expected) > 10
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=atol, msg=name)


@pytest.mark.parametrize("kd_mode", MODES)
def test_cached_step_equals_the_uncached_step_without_dropout(tiny_dirs, tmp_path, kd_mode):
    examples = make_examples(6, num_negatives=1)
    common = dict(kd_mode=kd_mode, teacher_autocast_dtype="float32", per_device_train_batch_size=6)
    plain, student, _, collator = make_trainer(tiny_dirs, tmp_path / "plain", examples, **common)
    cached, *_ = make_trainer(tiny_dirs, tmp_path / "cached", examples, gradient_cache_chunk_size=4, **common)
    without_dropout(student)
    batch = collator(examples)
    loss, expected = step_gradients(plain, student, batch)
    cached_loss, got = step_gradients(cached, student, batch)  # same student: only the trainer differs
    assert abs(cached_loss - loss) < 1e-6
    assert_same_gradients(got, expected)
    with torch.no_grad():  # evaluation: the plain loss, from chunked encodings
        assert abs(float(cached.compute_loss(student, batch)) - loss) < 1e-6


def chunked_reference_step(trainer, student, batch, chunk_size):
    """Plain autograd over the chunked forward passes the cached step makes (each chunk cut to its longest row)."""
    sides = []
    for prefix in ("query", "passage"):
        ids, mask = batch[f"{prefix}_input_ids"], batch[f"{prefix}_attention_mask"]
        chunks = []
        for begin, end in chunk_ranges(ids.shape[0], chunk_size):
            width = int(mask[begin:end].any(dim=0).nonzero().max()) + 1
            chunks.append(student(input_ids=ids[begin:end, :width], attention_mask=mask[begin:end, :width]).embeddings)
        sides.append(torch.cat(chunks))
    targets = () if trainer.args.kd_mode == "none" else (trainer.teacher_scores(batch),)
    loss = trainer.loss(*sides, *targets, passage_ids=batch["passage_ids"])
    loss.backward()
    grads = {name: p.grad.clone() for name, p in student.named_parameters() if p.grad is not None}
    student.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


@pytest.mark.parametrize("kd_mode", MODES)
def test_cached_step_with_dropout_replays_the_same_dropout(tiny_dirs, tmp_path, kd_mode):
    examples = make_examples(6, num_negatives=1)
    cached, student, _, collator = make_trainer(
        tiny_dirs, tmp_path, examples, kd_mode=kd_mode, teacher_autocast_dtype="float32", gradient_cache_chunk_size=4
    )
    student.train()  # hidden dropout 0.1
    batch = collator(examples)
    torch.manual_seed(11)
    reference_loss, expected = chunked_reference_step(cached, student, batch, chunk_size=4)
    torch.manual_seed(11)
    loss, got = step_gradients(cached, student, batch)
    assert abs(loss - reference_loss) < 1e-6
    assert_same_gradients(got, expected)
    torch.manual_seed(12)  # other dropout draws give other gradients: the comparison above is not empty
    _, other = step_gradients(cached, student, batch)
    assert max(float((other[name] - value).abs().max()) for name, value in expected.items()) > 1e-4


def test_gradient_accumulation_with_cached_gradients_equals_without(tiny_dirs, tmp_path):
    examples = make_examples(8, num_negatives=1)
    common = dict(
        max_steps=1,
        optim="sgd",
        learning_rate=0.5,
        max_grad_norm=0.0,
        warmup_steps=0,
        teacher_autocast_dtype="float32",
    )
    common.update(per_device_train_batch_size=4, gradient_accumulation_steps=2)
    students = {}
    for name, extra in (("plain", {}), ("cached", {"gradient_cache_chunk_size": 3})):
        trainer, student, *_ = make_trainer(tiny_dirs, tmp_path / name, examples, **common, **extra)
        without_dropout(student)
        trainer.train()
        students[name] = student
    before = make_trainer(tiny_dirs, tmp_path / "before", examples)[1].state_dict()
    moved = 0
    for (name, a), (_, b) in zip(students["plain"].state_dict().items(), students["cached"].state_dict().items()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=name)
        moved += int(not torch.equal(a, before[name]))
    assert moved > 10


def test_resume_with_cached_gradients_equals_the_uninterrupted_run(tiny_dirs, tmp_path):
    """Dropout on: the resumed run must restore the RNG the cached passes replay."""
    examples = make_examples(12, num_negatives=3)
    common = dict(max_steps=4, gradient_cache_chunk_size=2)
    full, full_student, *_ = make_trainer(
        tiny_dirs, tmp_path / "full", examples, save_strategy="steps", save_steps=2, **common
    )
    full.train()
    resumed, resumed_student, *_ = make_trainer(tiny_dirs, tmp_path / "resumed", examples, **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-2"))
    for (name, a), (_, b) in zip(full_student.state_dict().items(), resumed_student.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    ("chunk_size", "message"),
    [(0, "positive"), (-3, "positive"), (2.5, "positive"), (5, "larger than per_device_train_batch_size=4")],
)
def test_bad_chunk_sizes_are_refused(tmp_path, chunk_size, message):
    with pytest.raises(ValueError, match=message):
        make_args(tmp_path, gradient_cache_chunk_size=chunk_size)
