"""cached_loss (GradCache) gives the gradients of plain autograd on the same forward passes, dropout included."""

from __future__ import annotations

import pytest
import torch

from tct_hf.losses import InBatchKDLoss, InBatchNegativesLoss, PairwiseKDLoss
from tct_hf.losses.gradient_cache import CachedSide, cached_loss, chunk_ranges

HIDDEN = 6


def make_encoder(dropout: float) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(5, 16), torch.nn.Dropout(dropout), torch.nn.Tanh(), torch.nn.Linear(16, HIDDEN)
    ).double()


def problem(num_queries=6, num_negatives=1, seed=1):
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(num_queries, 5, generator=generator, dtype=torch.float64)
    passages = torch.randn(num_queries * (1 + num_negatives), 5, generator=generator, dtype=torch.float64)
    teacher = torch.randn(num_queries, passages.shape[0], generator=generator, dtype=torch.float64) * 3
    return queries, passages, teacher


LOSSES = {
    "in_batch_kd": lambda teacher: lambda q, p: InBatchKDLoss(temperature=0.5, ce_weight=0.2)(q, p, teacher),
    "pairwise_kd": lambda teacher: lambda q, p: PairwiseKDLoss()(q, p, teacher),
    "in_batch_negatives": lambda teacher: lambda q, p: InBatchNegativesLoss()(q, p),
}


def gradients(encoder) -> list[torch.Tensor]:
    grads = [parameter.grad.clone() for parameter in encoder.parameters()]
    encoder.zero_grad(set_to_none=True)
    return grads


def chunked_autograd_reference(encoder, queries, passages, loss_fn, chunk_size):
    """Plain autograd over the same chunked forward passes (same order, so the same dropout draws)."""
    embedded = [
        torch.cat([encoder(inputs[begin:end]) for begin, end in chunk_ranges(inputs.shape[0], chunk_size)])
        for inputs in (queries, passages)
    ]
    loss = loss_fn(*embedded)
    loss.backward()
    return loss.detach()


def cached(encoder, queries, passages, loss_fn, chunk_size):
    sides = [
        CachedSide(lambda b, e, with_grad, x=inputs: encoder(x[b:e]), count=inputs.shape[0])
        for inputs in (queries, passages)
    ]
    return cached_loss(sides, chunk_size, loss_fn)


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("chunk_size", [1, 4])
def test_cached_gradients_equal_autograd_with_dropout_on(name, chunk_size):
    queries, passages, teacher = problem(num_negatives=2 if name == "pairwise_kd" else 1)
    loss_fn = LOSSES[name](teacher)
    encoder = make_encoder(dropout=0.3)
    torch.manual_seed(42)
    expected_loss = chunked_autograd_reference(encoder, queries, passages, loss_fn, chunk_size)
    expected = gradients(encoder)
    torch.manual_seed(42)
    loss = cached(encoder, queries, passages, loss_fn, chunk_size)
    after_pass_one = torch.get_rng_state()
    loss.backward()
    assert torch.equal(torch.get_rng_state(), after_pass_one), "replaying must not move the RNG"
    torch.testing.assert_close(loss.detach(), expected_loss, rtol=0, atol=1e-12)
    for got, want in zip(gradients(encoder), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    # Without replaying the RNG the re-encoded chunks would differ: the test would see it.
    torch.manual_seed(42)
    loss = cached(encoder, queries, passages, loss_fn, chunk_size)
    torch.manual_seed(7)
    assert not torch.equal(encoder(queries[:chunk_size]), encoder(queries[:chunk_size]))


def test_without_dropout_cached_equals_one_full_forward():
    queries, passages, teacher = problem()
    loss_fn = LOSSES["in_batch_kd"](teacher)
    encoder = make_encoder(dropout=0.0)
    full = loss_fn(encoder(queries), encoder(passages))
    full.backward()
    expected = gradients(encoder)
    loss = cached(encoder, queries, passages, loss_fn, chunk_size=4)
    loss.backward()
    torch.testing.assert_close(loss.detach(), full.detach())
    for got, want in zip(gradients(encoder), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_the_gradient_reaching_the_loss_scales_every_chunk():
    """Trainer divides the loss by the accumulation steps before backward: the cached step must follow."""
    queries, passages, teacher = problem()
    loss_fn = LOSSES["in_batch_kd"](teacher)
    encoder = make_encoder(dropout=0.0)
    cached(encoder, queries, passages, loss_fn, chunk_size=2).backward()
    whole = gradients(encoder)
    (cached(encoder, queries, passages, loss_fn, chunk_size=2) / 4).backward()
    for got, want in zip(gradients(encoder), whole):
        torch.testing.assert_close(got, want / 4, rtol=0, atol=1e-12)


def test_autocast_of_the_first_pass_is_replayed_in_backward():
    queries, passages, teacher = (x.float() for x in problem())
    loss_fn = LOSSES["in_batch_kd"](teacher)
    encoder = make_encoder(dropout=0.0).float()
    # No cast cache: every chunk casts the weights itself, so its bf16 weight gradient reaches the float32 .grad on
    # its own, as in the cached step (a shared cast would first sum the chunks' gradients in bf16).
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        reference = chunked_autograd_reference(encoder, queries, passages, loss_fn, chunk_size=3)
    expected = gradients(encoder)
    chunked_autograd_reference(encoder, queries, passages, loss_fn, chunk_size=3)
    in_float32 = gradients(encoder)
    assert max(float((a - b).abs().max()) for a, b in zip(in_float32, expected)) > 1e-4  # bf16 is visible
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = cached(encoder, queries, passages, loss_fn, chunk_size=3)
    loss.backward()  # outside the autocast block, as Trainer does
    torch.testing.assert_close(loss.detach(), reference)
    for got, want in zip(gradients(encoder), expected):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_without_gradients_it_is_the_plain_loss():
    queries, passages, teacher = problem()
    loss_fn = LOSSES["in_batch_kd"](teacher)
    encoder = make_encoder(dropout=0.0)
    with torch.no_grad():
        loss = cached(encoder, queries, passages, loss_fn, chunk_size=4)
        torch.testing.assert_close(loss, loss_fn(encoder(queries), encoder(passages)))
    assert not loss.requires_grad


@pytest.mark.parametrize("chunk_size", [0, -2, 1.5, True])
def test_bad_chunk_sizes_are_refused(chunk_size):
    queries, passages, teacher = problem()
    encoder = make_encoder(dropout=0.0)
    with pytest.raises(ValueError, match="^cached_loss: the chunk size must be a positive integer"):
        cached(encoder, queries, passages, LOSSES["in_batch_kd"](teacher), chunk_size)
