"""All-gathers for cross-device in-batch negatives; each is the identity when torch.distributed is not initialised.

Why the gradient must be summed (``all_gather_with_grad``): with ``R`` processes each computing the loss of its
``B/R`` local queries against the gathered ``B``-query batch of passages, the full-batch loss is
``L = (1/R) * sum_r L_r``. A passage embedding of rank ``r`` enters every rank's ``L_r'``, so its gradient is
``sum_r' dL_r'/dx``. The backward below all-reduces (SUM) the gradient each rank computed for the whole gathered
tensor and keeps this rank's slice, so the local shard gets exactly ``sum_r' dL_r'/dx``; DDP's mean of the parameter
gradients over ranks then yields ``dL/dtheta`` of the single-process batch. No world-size scaling is needed.

Uses only ``all_gather`` and ``all_reduce``, so it runs on gloo (CPU) as well as NCCL.

Example (two processes, each ``x`` of shape ``[2, H]``)::

    y = all_gather_with_grad(x)  # [4, H]: rank 0's rows, then rank 1's
    loss_of_local_queries(y).backward()  # x.grad includes the gradient of the other rank's loss
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

__all__ = ["all_gather_no_grad", "all_gather_with_grad", "gather_padded", "is_distributed", "rank", "world_size"]


def is_distributed() -> bool:
    """True when a torch.distributed process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group, 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default group, 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def _gather_shards(tensor: Tensor) -> list[Tensor]:
    tensor = tensor.contiguous()
    shards = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(shards, tensor)
    return shards


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: concatenate equal-size shards of every rank along dim 0. Backward: SUM over ranks, keep own slice."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        ctx.rank = rank()
        ctx.local_size = tensor.shape[0]
        shards = _gather_shards(tensor.detach())
        return torch.cat(shards, dim=0)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.local_size
        return grad[start : start + ctx.local_size]


def _check_equal_shapes(tensor: Tensor, what: str) -> None:
    """All ranks must contribute the same shape (all_gather's contract); say so instead of hanging or garbling."""
    shape = torch.tensor([tensor.dim(), *tensor.shape, *([0] * (8 - tensor.dim()))], dtype=torch.int64)
    shape = shape.to(tensor.device if dist.get_backend() != "gloo" else "cpu")
    shapes = _gather_shards(shape)
    if any(not torch.equal(other, shapes[0]) for other in shapes):
        listed = [tuple(s[1 : 1 + int(s[0])].tolist()) for s in shapes]
        raise ValueError(
            f"{what}: needs the same shape on every rank, got {listed}. Give every "
            "process the same per-device batch size (accelerate's even_batches / drop_last=True), or use "
            "gather_padded for a variable-length dimension."
        )


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """``cat([tensor of rank 0, ..., rank R-1], dim=0)``; the local shard receives the gradient of every rank's loss.

    Every rank must pass a tensor of the same shape. Identity when not distributed.
    """
    if not is_distributed():
        return tensor
    _check_equal_shapes(tensor, "all_gather_with_grad")
    return _AllGatherWithGrad.apply(tensor)


def all_gather_no_grad(tensor: Tensor) -> Tensor:
    """``cat([tensor of rank 0, ..., rank R-1], dim=0)`` without gradient. Identity when not distributed."""
    if not is_distributed():
        return tensor.detach()
    _check_equal_shapes(tensor, "all_gather_no_grad")
    return torch.cat(_gather_shards(tensor.detach()), dim=0)


def gather_padded(tensor: Tensor, dim: int, value: float | bool = 0, with_grad: bool = False) -> Tensor:
    """All-gather along dim 0 after padding dimension ``dim`` to its maximum over ranks with ``value``.

    For variable-length token tensors, e.g. teacher passage token embeddings ``[N, L, d]`` (``dim=1``, ``value=0``)
    together with their masks ``[N, L]`` (``dim=1``, ``value=False``): each rank pads to its own longest passage,
    so ``L`` differs between ranks. Padded positions must be masked by the caller (padding the mask with False
    does that). Identity when not distributed.

    Example::

        tokens = gather_padded(tokens, dim=1)  # [N_global, L_max, d]
        token_mask = gather_padded(token_mask, dim=1, value=False)  # [N_global, L_max]
    """
    if not 0 < dim < tensor.dim() and not (dim < 0 and -tensor.dim() < dim):
        raise ValueError(
            f"gather_padded: pads a dimension other than 0 (the gathered one); got dim="
            f"{dim} for shape {tuple(tensor.shape)}."
        )
    if not is_distributed():
        return tensor
    dim = dim % tensor.dim()
    length = torch.tensor([tensor.shape[dim]], dtype=torch.int64)
    length = length.to(tensor.device if dist.get_backend() != "gloo" else "cpu")
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    missing = int(length.item()) - tensor.shape[dim]
    if missing:
        padding = [0, 0] * (tensor.dim() - 1 - dim) + [0, missing]
        if tensor.dtype == torch.bool:
            tensor = F.pad(tensor.to(torch.uint8), padding, value=int(value)).to(torch.bool)
        else:
            tensor = F.pad(tensor, padding, value=value)
    return all_gather_with_grad(tensor) if with_grad else all_gather_no_grad(tensor)
