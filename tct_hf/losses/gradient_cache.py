"""Cached gradients (GradCache): an in-batch loss over a batch far larger than the encoder's activations allow.

Gao, Zhang, Han & Callan, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", RepL4NLP
2021. A batch loss ``L(E)`` depends on the parameters only through the embeddings ``E`` (one matrix per input side:
queries, passages). So ``dL/dθ = sum_chunks (dL/dE_chunk) · dE_chunk/dθ``, computed in three passes:

1. every side is embedded chunk by chunk without an autograd graph (one chunk's activations alive at a time);
   the RNG state before each chunk is kept;
2. the loss runs on the full embedding matrices (gathered across processes by the loss itself) and is
   back-propagated to them only: ``G = dL/dE`` is cached (a few MB);
3. each chunk is embedded again WITH a graph, under the RNG state of pass 1 (so dropout draws the same masks and
   the embeddings are bit-identical), and ``(E_chunk * G_chunk).sum()`` is back-propagated into the parameters.

Pass 3 runs in a hook on the returned loss, when the caller calls ``backward`` on it (as ``transformers.Trainer``
does): the gradient reaching the loss (e.g. ``1 / gradient_accumulation_steps``, or an AMP scale) multiplies every
chunk's gradient. Under DDP, every chunk but the last runs inside ``no_sync``, so gradients are all-reduced once.

Nothing here knows about models: an ``encode(begin, end, with_grad)`` callable per input side embeds rows
``begin:end``. Used by ``TCTTrainer`` (``gradient_cache_chunk_size``) and by ``tct_hf.st.CachedInBatchKDLoss``.

Example (a linear "encoder": the cached gradient equals the plain one)::

    >>> generator = torch.Generator().manual_seed(0)
    >>> encoder, x = torch.nn.Linear(3, 2), torch.randn(5, 3, generator=generator)
    >>> side = CachedSide(lambda b, e, with_grad: encoder(x[b:e]), count=5)
    >>> loss = cached_loss([side], chunk_size=2, loss_fn=lambda e: (e ** 2).sum())
    >>> loss.backward(); cached_grad = encoder.weight.grad.clone(); encoder.weight.grad = None
    >>> (encoder(x) ** 2).sum().backward()
    >>> torch.allclose(cached_grad, encoder.weight.grad)
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["AutocastState", "CachedSide", "RandomState", "cached_loss", "check_chunk_size", "chunk_ranges"]


class RandomState:
    """The CPU RNG and the RNG of every CUDA device in use, as they are now; ``replay()`` restores them inside a
    block and leaves the outer RNG untouched after it (so pass 3 does not shift the rest of training's draws)."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        self.cuda = [torch.cuda.get_rng_state(device) for device in self.cuda_devices]

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=self.cuda_devices):
            torch.set_rng_state(self.cpu)
            for device, state in zip(self.cuda_devices, self.cuda):
                torch.cuda.set_rng_state(state, device)
            yield


class AutocastState:
    """Whether autocast is on (and in which dtype) for the CPU and CUDA now; ``replay()`` re-enters it. Pass 3 runs
    inside ``backward``, outside the caller's autocast block, yet must compute exactly what pass 1 computed."""

    DEVICE_TYPES = ("cpu", "cuda")

    def __init__(self) -> None:
        self.states = [
            (device_type, torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))
            for device_type in self.DEVICE_TYPES
        ]

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for device_type, enabled, dtype in self.states:
                stack.enter_context(torch.autocast(device_type=device_type, dtype=dtype, enabled=enabled))
            yield


def check_chunk_size(owner: str, chunk_size: int) -> None:
    """A chunk size is a positive integer; ``owner`` names the caller in the error."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(
            f"{owner}: the chunk size must be a positive integer (rows per forward pass), got {chunk_size!r}."
        )


def chunk_ranges(count: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[(0, c), (c, 2c), ...]`` covering ``count`` rows; the last chunk may be shorter.

    >>> chunk_ranges(5, 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    check_chunk_size("chunk_ranges", chunk_size)
    return [(begin, min(begin + chunk_size, count)) for begin in range(0, count, chunk_size)]


@dataclass
class CachedSide:
    """One input side of the loss (e.g. the queries): ``encode(begin, end, with_grad) -> Tensor[end - begin, H]``
    embeds rows ``begin:end`` (``with_grad`` False: pass 1, e.g. through the unwrapped model; True: pass 3, through
    the DDP-wrapped one), for ``count`` rows."""

    encode: Callable[[int, int, bool], Tensor]
    count: int
    ranges: list[tuple[int, int]] = field(default_factory=list)
    states: list[RandomState] = field(default_factory=list)


def _embed_without_graph(side: CachedSide, chunk_size: int, keep_states: bool) -> Tensor:
    side.ranges = chunk_ranges(side.count, chunk_size)
    side.states = []
    chunks = []
    with torch.no_grad():
        for begin, end in side.ranges:
            if keep_states:
                side.states.append(RandomState())
            chunks.append(side.encode(begin, end, False))
    return torch.cat(chunks, dim=0)


def _replay(
    sides: Sequence[CachedSide], grads: Sequence[Tensor], scale: Tensor, no_sync, autocast: AutocastState
) -> None:
    """Pass 3: each chunk re-embedded with a graph under its pass-1 RNG and autocast state, its cached gradient
    applied."""
    remaining = sum(len(side.ranges) for side in sides)
    with torch.enable_grad(), autocast.replay():
        for side, grad in zip(sides, grads):
            for (begin, end), state in zip(side.ranges, side.states):
                remaining -= 1
                sync = contextlib.nullcontext() if remaining == 0 or no_sync is None else no_sync()
                with sync, state.replay():
                    embeddings = side.encode(begin, end, True)
                    surrogate = (embeddings * grad[begin:end].to(embeddings.dtype)).sum()
                    (surrogate * scale.to(surrogate.dtype)).backward()


def cached_loss(
    sides: Sequence[CachedSide],
    chunk_size: int,
    loss_fn: Callable[..., Tensor],
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> Tensor:
    """The loss of the whole batch with encoder memory of one chunk (module docstring); call ``backward`` on it.

    Args:
        sides: the input sides, in the order ``loss_fn`` takes their embedding matrices.
        chunk_size: rows per forward pass (the last chunk may be shorter).
        loss_fn: ``loss_fn(*embeddings) -> scalar``: the batch loss (it may gather across processes).
        no_sync: e.g. ``ddp_model.no_sync``: gradients of all chunks but the last stay local.

    Returns:
        A scalar leaf tensor holding the loss. Under ``torch.no_grad`` (evaluation) it is just the loss; with
        gradients enabled, its ``backward`` runs pass 3 and fills the parameters' ``.grad``.
    """
    check_chunk_size("cached_loss", chunk_size)
    grad_enabled = torch.is_grad_enabled()
    autocast = AutocastState()
    embeddings = [_embed_without_graph(side, chunk_size, keep_states=grad_enabled) for side in sides]
    if not grad_enabled:
        return loss_fn(*embeddings)
    leaves = [matrix.detach().requires_grad_() for matrix in embeddings]
    loss = loss_fn(*leaves)
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    grads = [torch.zeros_like(leaf) if grad is None else grad for leaf, grad in zip(leaves, grads)]
    result = loss.detach().requires_grad_()

    def backward_hook(scale: Tensor) -> None:
        _replay(sides, grads, scale, no_sync, autocast)

    result.register_hook(backward_hook)
    return result
