"""Run a BERT encoder on the real tokens of a padded batch only: padding costs nothing in the linear layers.

A padded batch ``[B, L]`` with attention mask ``m`` is packed into one row of its ``T = sum(m)`` real tokens, with
each token's original position id and token type, and run through ``BertModel`` as ``[1, T]``. Everything in a BERT
layer except attention is per token, so the embeddings, the Q/K/V, output and feed-forward projections and the
LayerNorms see ``T`` tokens instead of ``B * L``. Attention is the one place where tokens of a sequence meet:

- with transformers' ``flash_attention_2`` (or another flash implementation) the packed row goes to the varlen
  kernel through the ``cu_seq_lens_*`` / ``max_length_*`` keyword arguments transformers defines for them;
- otherwise an attention function registered under ``"tct_hf_unpadded"`` scatters each layer's packed Q/K/V into a
  ``[B, W]`` layout (``W`` = the longest sequence), runs PyTorch's ``scaled_dot_product_attention`` with a key mask
  (the same kernel the padded ``"sdpa"`` path uses), and gathers the real tokens back; with ``attention_groups``
  the sequences are sorted by length and each group attends at its own longest length.

The result equals the padded forward on every attended position (padding positions, which no caller reads, are
zero). The packing indices are computed from the mask wherever it lives: on the host for encoding (before the copy
to the device, so no device value is read back), on the device in training.

This file imports torch and transformers only (no other file): it travels with the student's and the teacher's
checkpoints.

Example:
    >>> import torch
    >>> from transformers import BertConfig, BertModel
    >>> bert = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)).eval()
    >>> ids, mask = torch.tensor([[2, 7, 9], [2, 5, 0]]), torch.tensor([[1, 1, 1], [1, 1, 0]])
    >>> hidden = unpadded_last_hidden_state(bert, unpad(ids, mask))
    >>> padded = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    >>> bool(torch.allclose(hidden[mask.bool()], padded[mask.bool()], atol=1e-5))
    True
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
from torch import Tensor
from transformers import AttentionInterface

ATTENTION_NAME = "tct_hf_unpadded"


class AttentionGroup(NamedTuple):
    """Sequences that attend in one ``[rows, width]`` launch (``width`` = their longest)."""

    tokens: Tensor  # [T_g] positions of the group's tokens in the packed row
    slots: Tensor  # [T_g] flat positions (local row * width + rank in row) in the group's layout
    key_mask: Tensor  # [rows, 1, 1, width] bool, True on real tokens
    rows: int
    width: int


class UnpaddedBatch(NamedTuple):
    """The real tokens of a padded ``[B, L]`` batch and where they go back (see the module docstring)."""

    input_ids: Tensor  # [1, T]
    position_ids: Tensor  # [1, T] each token's column in the padded batch
    token_type_ids: Tensor  # [1, T]
    token_index: Tensor  # [T] flat positions (row * L + column) of the tokens in the padded batch
    cu_seq_lens: Tensor  # [B + 1] int32 cumulative lengths (the flash varlen convention)
    groups: tuple[AttentionGroup, ...]  # the attention launches of the SDPA path
    shape: tuple[int, int]  # (B, L) of the padded batch
    max_length: int  # the longest sequence

    def _map(self, function) -> UnpaddedBatch:
        def convert(value):
            if isinstance(value, Tensor):
                return function(value)
            if isinstance(value, AttentionGroup):
                return value._replace(
                    tokens=function(value.tokens), slots=function(value.slots), key_mask=function(value.key_mask)
                )
            return value

        return self._replace(
            **{name: convert(getattr(self, name)) for name in self._fields if name != "groups"},
            groups=tuple(convert(group) for group in self.groups),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> UnpaddedBatch:
        """The same batch on ``device`` (tensors copied, ``non_blocking`` from pinned memory)."""
        return self._map(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> UnpaddedBatch:
        """Page-locked copies of the tensors, so that a CUDA copy can run asynchronously."""
        return self._map(lambda tensor: tensor.pin_memory())


def unpad(
    input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None, attention_groups: int = 1
) -> UnpaddedBatch:
    """Pack the attended tokens of ``input_ids [B, L]`` (any padding side) into an `UnpaddedBatch`.

    ``attention_groups > 1`` sorts the sequences by length and lets each of that many groups attend at its own
    longest length (fewer wasted attention scores, more launches: worth it on the CPU, not on accelerators).
    Reads the mask's values (a synchronisation when it lives on an accelerator): call it on the host mask when the
    batch comes from a tokenizer."""
    if input_ids.dim() != 2 or input_ids.shape != attention_mask.shape:
        raise ValueError(
            f"unpad needs input_ids and attention_mask of the same [B, L] shape, got {tuple(input_ids.shape)} and "
            f"{tuple(attention_mask.shape)}."
        )
    if not isinstance(attention_groups, int) or attention_groups < 1:
        raise ValueError(f"attention_groups must be a positive int, got {attention_groups!r}.")
    mask = attention_mask.bool()
    batch, length = mask.shape
    lengths = mask.sum(dim=1)
    token_index = mask.flatten().nonzero().squeeze(1)
    rows, columns = token_index // length, token_index % length
    rank = (mask.cumsum(dim=1) - 1).flatten()[token_index]
    groups = []
    order = torch.argsort(lengths, descending=True, stable=True)
    for members in torch.tensor_split(order, min(attention_groups, max(batch, 1))):
        if members.numel() == 0:
            continue
        width = int(lengths[members].max())
        local = torch.full((batch,), -1, dtype=torch.long, device=mask.device)
        local[members] = torch.arange(members.numel(), device=mask.device)
        tokens = (local[rows] >= 0).nonzero().squeeze(1)
        positions = torch.arange(width, device=mask.device)
        groups.append(
            AttentionGroup(
                tokens=tokens,
                slots=local[rows[tokens]] * width + rank[tokens],
                key_mask=(positions[None, :] < lengths[members][:, None])[:, None, None, :],
                rows=members.numel(),
                width=width,
            )
        )
    types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
    cu_seq_lens = torch.zeros(batch + 1, dtype=torch.int32, device=mask.device)
    cu_seq_lens[1:] = lengths.cumsum(dim=0)
    return UnpaddedBatch(
        input_ids=input_ids.flatten()[token_index].unsqueeze(0),
        position_ids=columns.unsqueeze(0),
        token_type_ids=types.flatten()[token_index].unsqueeze(0),
        token_index=token_index,
        cu_seq_lens=cu_seq_lens,
        groups=tuple(groups),
        shape=(batch, length),
        max_length=int(lengths.max()) if batch else 0,
    )


def repad(packed: Tensor, batch: UnpaddedBatch) -> Tensor:
    """``packed [T, ...]`` (one value per real token) back to the padded ``[B, L, ...]`` layout, zeros on padding."""
    rows, length = batch.shape
    out = packed.new_zeros((rows * length, *packed.shape[1:]))
    out[batch.token_index] = packed
    return out.view(rows, length, *packed.shape[1:])


def unpadded_attention(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    unpadded_batch: UnpaddedBatch | None = None,
    **kwargs,
) -> tuple[Tensor, None]:
    """transformers attention interface over a packed row: ``query/key/value [1, heads, T, d]`` -> ``[1, T, heads,
    d]``, each token attending only to the tokens of its own sequence (via the ``[B, W]`` layout and SDPA)."""
    if unpadded_batch is None:
        raise ValueError(
            f"attention implementation {ATTENTION_NAME!r} runs only inside unpadded_last_hidden_state (it needs the "
            "packing layout); set the model's attn_implementation back to 'sdpa' or 'eager'."
        )
    heads, head_dim = query.shape[1], query.shape[3]
    packed = [states[0].transpose(0, 1) for states in (query, key, value)]  # [T, heads, d] each
    attended = packed[0].new_empty(packed[0].shape)
    for group in unpadded_batch.groups:

        def to_layout(states: Tensor, group: AttentionGroup = group) -> Tensor:
            out = states.new_zeros(group.rows * group.width, heads, head_dim)
            out.index_copy_(0, group.slots, states.index_select(0, group.tokens))
            return out.view(group.rows, group.width, heads, head_dim).transpose(1, 2)

        result = torch.nn.functional.scaled_dot_product_attention(
            *(to_layout(states) for states in packed),
            attn_mask=group.key_mask,
            dropout_p=dropout,
            scale=scaling,
        )
        flat = result.transpose(1, 2).reshape(group.rows * group.width, heads, head_dim)
        attended.index_copy_(0, group.tokens, flat.index_select(0, group.slots))
    return attended.unsqueeze(0), None


AttentionInterface.register(ATTENTION_NAME, unpadded_attention)


@contextlib.contextmanager
def _attention_implementation(config, name: str):
    previous = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = previous


def unpadded_last_hidden_state(bert: torch.nn.Module, batch: UnpaddedBatch, packed: bool = False) -> Tensor:
    """``bert``'s last hidden state over the real tokens of ``batch``: ``[B, L, H]`` with zeros on padding, or the
    packed ``[T, H]`` when ``packed`` (turn it back with `repad`). ``bert`` is a ``BertModel`` (or any encoder with
    the same ``position_ids`` / attention-interface contract); gradients flow as through the padded forward."""
    if batch.input_ids.shape[1] == 0:
        hidden = torch.zeros(0, bert.config.hidden_size, device=batch.input_ids.device)
        return hidden if packed else repad(hidden, batch)
    implementation = bert.config._attn_implementation or "eager"
    if "flash" in implementation:
        # transformers' flash integration runs the packed row as variable-length sequences from these arguments.
        width = batch.max_length
        extra: dict = {"cu_seq_lens_q": batch.cu_seq_lens, "cu_seq_lens_k": batch.cu_seq_lens}
        extra.update(max_length_q=width, max_length_k=width)
        context = contextlib.nullcontext()
    else:
        extra = {"unpadded_batch": batch}
        context = _attention_implementation(bert.config, ATTENTION_NAME)
    with context:
        hidden = bert(
            input_ids=batch.input_ids,
            position_ids=batch.position_ids,
            token_type_ids=batch.token_type_ids,
            **extra,
        ).last_hidden_state[0]
    return hidden if packed else repad(hidden, batch)
