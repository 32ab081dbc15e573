"""The unpadded BERT forward (`tct_hf.bert_unpadded`) against the padded forward of the same `BertModel`: equal on
every attended position in float32 (values and gradients), whatever the padding side, token types and groups."""

from __future__ import annotations

import pytest
import torch
from transformers import BertModel
from utils import tiny_bert_config

from tct_hf.bert_unpadded import repad, unpad, unpadded_last_hidden_state


def random_batch(seed: int, left_padded: bool = False):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([9, 3, 17, 1, 12, 17, 5, 8])
    width = 20
    positions = torch.arange(width)
    mask = (positions[None, :] < lengths[:, None]).long()
    if left_padded:
        mask = mask.flip(1)
    ids = torch.randint(5, 200, (len(lengths), width), generator=generator) * mask
    types = torch.randint(0, 2, (len(lengths), width), generator=generator) * mask
    return ids, mask, types


@pytest.fixture(scope="module")
def bert():
    torch.manual_seed(0)
    return BertModel(tiny_bert_config(219, attn_implementation="sdpa")).eval()


@pytest.mark.parametrize("left_padded", [False, True], ids=["right", "left"])
@pytest.mark.parametrize("groups", [1, 3, 8])
def test_unpadded_forward_equals_padded_forward(bert, left_padded, groups):
    ids, mask, types = random_batch(1, left_padded)
    with torch.no_grad():
        padded = bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        unpadded = unpadded_last_hidden_state(bert, unpad(ids, mask, types, attention_groups=groups))
    assert unpadded.shape == padded.shape
    attended = mask.bool()
    torch.testing.assert_close(unpadded[attended], padded[attended], atol=1e-5, rtol=0)
    assert unpadded[~attended].abs().max() == 0  # padding comes back as zeros
    assert bert.config._attn_implementation == "sdpa"  # restored after the call


def test_packed_output_and_repad(bert):
    ids, mask, types = random_batch(2)
    batch = unpad(ids, mask, types)
    assert batch.input_ids.shape == (1, int(mask.sum()))
    assert batch.cu_seq_lens.tolist() == [0, *torch.cumsum(mask.sum(1), 0).tolist()]
    with torch.no_grad():
        packed = unpadded_last_hidden_state(bert, batch, packed=True)
        full = unpadded_last_hidden_state(bert, batch)
    assert packed.shape == (int(mask.sum()), bert.config.hidden_size)
    torch.testing.assert_close(repad(packed, batch), full, atol=0, rtol=0)


def test_gradients_equal_the_padded_forward(bert):
    ids, mask, types = random_batch(3)
    weights = torch.randn(
        ids.shape[0], ids.shape[1], bert.config.hidden_size, generator=torch.Generator().manual_seed(4)
    )
    weights = weights * mask[..., None]

    def gradients(hidden_fn):
        bert.zero_grad()
        (hidden_fn() * weights).sum().backward()
        return {
            name: parameter.grad.clone() for name, parameter in bert.named_parameters() if parameter.grad is not None
        }

    padded = gradients(lambda: bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state)
    unpadded = gradients(lambda: unpadded_last_hidden_state(bert, unpad(ids, mask, types, attention_groups=2)))
    bert.zero_grad()
    assert "embeddings.word_embeddings.weight" in padded
    for name, gradient in padded.items():
        if name.startswith("pooler."):
            continue  # the pooler reads position 0 of a different layout; no caller uses it
        torch.testing.assert_close(unpadded[name], gradient, atol=1e-5, rtol=1e-4, msg=name)


def test_a_row_without_tokens_and_an_empty_batch(bert):
    ids, mask, types = random_batch(5)
    mask[2] = 0
    with torch.no_grad():
        padded = bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        unpadded = unpadded_last_hidden_state(bert, unpad(ids, mask, types, attention_groups=3))
    attended = mask.bool()
    torch.testing.assert_close(unpadded[attended], padded[attended], atol=1e-5, rtol=0)
    assert unpadded[2].abs().max() == 0
    empty = unpad(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4, dtype=torch.long))
    assert unpadded_last_hidden_state(bert, empty).shape == (0, 4, bert.config.hidden_size)


def test_bad_inputs_raise(bert):
    with pytest.raises(ValueError, match="same \\[B, L\\] shape"):
        unpad(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_groups"):
        unpad(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long), attention_groups=0)
    from tct_hf.bert_unpadded import unpadded_attention

    q = torch.zeros(1, 2, 3, 4)
    with pytest.raises(ValueError, match="needs the packing layout"):
        unpadded_attention(bert, q, q, q, None)
