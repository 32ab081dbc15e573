"""ColBERTModel: MaxSim against a naive triple loop, a hand-written Stanford checkpoint against an independent
Stanford-rules scorer, sentence-transformers MultiVectorEncoder / PyLate directories against sentence-transformers'
own scores, and bad input."""

from __future__ import annotations

import json
import math
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import BertModel, BertTokenizer
from utils import tiny_bert_config, write_tiny_bert, write_tokenizer

from tct_hf import ColBERTConfig, ColBERTModel
from tct_hf.modeling_colbert import _maxsim_block, maxsim, maxsim_pairwise

QUERIES = ["what is the boiling temperature of water?", "paris", "how does a wing produce low pressure air flow"]
PASSAGES = [
    "water boils at high temperature, in the city of paris.",
    "the boundary layer on a wing surface has low speed flow; shock waves form at high speed! " * 2,
    "music",
    "tax law (money) and bank price",
]


def naive_maxsim(q, q_mask, d, d_mask) -> np.ndarray:
    """sum over scored query tokens of the max over scored passage tokens, one pair and one token at a time."""
    scores = np.zeros((len(q), len(d)))
    for b in range(len(q)):
        for n in range(len(d)):
            total = 0.0
            for i in range(q.shape[1]):
                if not q_mask[b][i]:
                    continue
                best = -np.inf
                for j in range(d.shape[1]):
                    if d_mask[n][j]:
                        best = max(best, float(np.dot(q[b][i], d[n][j])))
                total += best
            scores[b, n] = total
    return scores


def test_maxsim_equals_naive_triple_loop():
    generator = torch.Generator().manual_seed(0)
    q, d = torch.randn(3, 5, 4, generator=generator), torch.randn(7, 6, 4, generator=generator)
    q_mask = torch.rand(3, 5, generator=generator) > 0.3
    d_mask = torch.rand(7, 6, generator=generator) > 0.4
    d_mask[:, 0] = True
    expected = naive_maxsim(q.numpy(), q_mask.numpy(), d.numpy(), d_mask.numpy())
    np.testing.assert_allclose(maxsim(q, q_mask, d, d_mask).numpy(), expected, atol=1e-5)
    # Tiny chunks: several passage chunks give the same matrix.
    np.testing.assert_allclose(maxsim(q, q_mask, d, d_mask, chunk_elements=40).numpy(), expected, atol=1e-5)
    pairs = maxsim_pairwise(q, q_mask, d[:3], d_mask[:3]).numpy()
    np.testing.assert_allclose(pairs, np.diag(expected[:, :3]), atol=1e-5)


@pytest.mark.parametrize("pairs_per_block", [1, 2, 4, 6, 21, 10**6])
def test_maxsim_in_blocks_of_queries_and_passages_equals_naive(pairs_per_block):
    generator = torch.Generator().manual_seed(1)
    q, d = torch.randn(7, 5, 4, generator=generator), torch.randn(9, 6, 4, generator=generator)
    q_mask = torch.rand(7, 5, generator=generator) > 0.3
    d_mask = torch.rand(9, 6, generator=generator) > 0.4
    d_mask[:, 0] = True
    expected = naive_maxsim(q.numpy(), q_mask.numpy(), d.numpy(), d_mask.numpy())
    got = maxsim(q, q_mask, d, d_mask, chunk_elements=pairs_per_block * 5 * 6)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3, 50, 1000])
@pytest.mark.parametrize("count", [1, 7, 200, 5000])
@pytest.mark.parametrize("pairs", [1, 10, 64, 10**4])
def test_maxsim_block_stays_within_its_budget(batch, count, pairs):
    rows, step = _maxsim_block(batch, count, pair_elements=30, chunk_elements=pairs * 30)
    assert 1 <= rows <= batch and step >= 1
    assert rows * min(step, count) <= pairs  # one [rows, step] block of pairs never exceeds the budget
    if batch * count <= pairs:
        assert (rows, min(step, count)) == (batch, count)  # everything fits: one block
    elif batch <= math.isqrt(pairs):
        assert rows == batch  # few queries: all of them, passages in chunks


def test_unscored_passage_tokens_never_win_the_max_whatever_their_vectors():
    # Every scored similarity is negative; unscored positions hold a zero vector (similarity 0, above them), a
    # huge vector aligned with the query (similarity 1e6) and NaN: none may be picked or leak into the score.
    q = torch.tensor([[[1.0, 0.0]]])
    d = torch.tensor([[[-2.0, 0.0], [-3.0, 1.0], [0.0, 0.0], [1e6, 0.0], [float("nan"), 0.0]]])
    d_mask = torch.tensor([[True, True, False, False, False]])
    q_mask = torch.ones(1, 1, dtype=torch.bool)
    expected = naive_maxsim(q.numpy(), q_mask.numpy(), d.numpy(), d_mask.numpy())
    assert expected[0, 0] == -2.0
    np.testing.assert_array_equal(maxsim(q, q_mask, d, d_mask).numpy(), expected)
    np.testing.assert_array_equal(maxsim_pairwise(q, q_mask, d, d_mask).numpy(), expected[0])


def test_maxsim_gradient_equals_masked_max_gradient():
    # Teacher fine-tuning backpropagates through maxsim: the gradient must reach only the scored maxima.
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(3, 5, 8, dtype=torch.float64, generator=generator, requires_grad=True)
    d = torch.randn(4, 7, 8, dtype=torch.float64, generator=generator, requires_grad=True)
    q_mask = torch.rand(3, 5, generator=generator) > 0.2
    d_mask = torch.rand(4, 7, generator=generator) > 0.3
    d_mask[:, 0] = True
    similarity = torch.einsum("bih,njh->bnij", q, d).masked_fill(~d_mask[None, :, None, :], float("-inf"))
    reference = (similarity.amax(dim=-1) * q_mask[:, None, :]).sum(dim=-1)
    expected = torch.autograd.grad(reference.sum(), (q, d))
    actual = torch.autograd.grad(maxsim(q, q_mask, d, d_mask).sum(), (q, d))
    for got, want in zip(actual, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_maxsim_of_no_queries_or_no_passages_is_empty():
    q, d = torch.randn(2, 3, 4), torch.randn(5, 6, 4)
    ones = torch.ones
    assert maxsim(q[:0], ones(0, 3, dtype=torch.bool), d, ones(5, 6, dtype=torch.bool)).shape == (0, 5)
    assert maxsim(q, ones(2, 3, dtype=torch.bool), d[:0], ones(0, 6, dtype=torch.bool)).shape == (2, 0)


def test_maxsim_accumulates_in_float32():
    # bf16 inputs, 1000 query tokens whose similarity is exactly 1 + 2**-7 (representable in bf16): the sum is exactly
    # 1007.8125 in float32, while a bf16 accumulator (8 significant bits) could not hold it (bf16 steps are 4 there).
    q = torch.ones(1, 1000, 1, dtype=torch.bfloat16)
    d = torch.full((2, 3, 1), 1 + 2**-7, dtype=torch.bfloat16)
    scores = maxsim(q, torch.ones(1, 1000, dtype=torch.bool), d, torch.ones(2, 3, dtype=torch.bool))
    assert scores.dtype == torch.float32
    np.testing.assert_array_equal(scores.numpy(), np.full((1, 2), 1007.8125, dtype=np.float32))
    assert float(torch.tensor(1007.8125).to(torch.bfloat16)) != 1007.8125
    # Random bf16 vectors: equal to the naive loop over the same (bf16-rounded) values in float64.
    generator = torch.Generator().manual_seed(3)
    q, d = torch.randn(2, 5, 8, generator=generator).bfloat16(), torch.randn(3, 4, 8, generator=generator).bfloat16()
    q_mask, d_mask = torch.ones(2, 5, dtype=torch.bool), torch.ones(3, 4, dtype=torch.bool)
    expected = naive_maxsim(q.double().numpy(), q_mask.numpy(), d.double().numpy(), d_mask.numpy())
    np.testing.assert_allclose(maxsim(q, q_mask, d, d_mask).numpy(), expected, rtol=1e-6, atol=1e-5)


def test_maxsim_rejects_passage_without_scored_token_and_bad_shapes():
    q, d = torch.randn(1, 2, 4), torch.randn(2, 3, 4)
    d_mask = torch.tensor([[True, False, False], [False, False, False]])
    with pytest.raises(ValueError, match=r"passages \[1\] have no scored token"):
        maxsim(q, torch.ones(1, 2, dtype=torch.bool), d, d_mask)
    with pytest.raises(ValueError, match="same dim"):
        maxsim(q, torch.ones(1, 2, dtype=torch.bool), torch.randn(2, 3, 5), torch.ones(2, 3, dtype=torch.bool))


# ---------------------------------------------------------------- Stanford checkpoint written by hand


def write_stanford_checkpoint(directory: Path, dim: int = 8, metadata: dict | None = None, hidden_size=32) -> Path:
    """Stanford ColBERT layout: config.json (architectures HF_ColBERT), model.safetensors with `bert.*` and a root
    `linear.weight` (no bias), artifact.metadata JSON."""
    tokenizer = write_tokenizer(directory)
    torch.manual_seed(1)
    config = tiny_bert_config(len(tokenizer), hidden_size=hidden_size)
    bert = BertModel(config, add_pooling_layer=True)
    weights = {f"bert.{key}": value.contiguous() for key, value in bert.state_dict().items()}
    weights["linear.weight"] = torch.randn(dim, 32)
    save_file(weights, str(directory / "model.safetensors"))
    config_dict = config.to_dict()
    config_dict["architectures"] = ["HF_ColBERT"]
    (directory / "config.json").write_text(json.dumps(config_dict))
    if metadata is not None:
        (directory / "artifact.metadata").write_text(json.dumps(metadata))
    return directory


def stanford_reference_scores(directory: Path, queries, passages, query_maxlen, doc_maxlen, attend_to_mask):
    """Stanford ColBERT's rules with the tokenizer and a BertModel: '. ' + text, marker id written at position 1,
    queries padded to query_maxlen with pads replaced by [MASK], passages truncated to doc_maxlen; Linear without
    bias, both sides L2-normalized, passage padding and punctuation excluded; naive MaxSim."""
    tokenizer = BertTokenizer.from_pretrained(str(directory))
    bert = BertModel.from_pretrained(str(directory)).eval()
    from safetensors.torch import load_file

    linear = load_file(str(directory / "model.safetensors"))["linear.weight"]
    vocab = tokenizer.get_vocab()
    q_marker, d_marker, mask_id = vocab["[unused0]"], vocab["[unused1]"], vocab["[MASK]"]
    q = tokenizer(
        [". " + x for x in queries],
        padding="max_length",
        truncation=True,
        max_length=query_maxlen,
        return_tensors="pt",
    )
    q_ids = q["input_ids"].clone()
    q_ids[:, 1] = q_marker
    q_attention = q["attention_mask"].clone()
    q_ids[q_ids == tokenizer.pad_token_id] = mask_id
    if attend_to_mask:
        q_attention[q_ids == mask_id] = 1
    d = tokenizer(
        [". " + x for x in passages], padding="longest", truncation=True, max_length=doc_maxlen, return_tensors="pt"
    )
    d_ids = d["input_ids"].clone()
    d_ids[:, 1] = d_marker
    skiplist = {tokenizer.encode(symbol, add_special_tokens=False)[0] for symbol in string.punctuation}
    with torch.no_grad():
        q_vectors = torch.nn.functional.normalize(
            bert(q_ids, attention_mask=q_attention).last_hidden_state @ linear.T, dim=2
        )
        d_vectors = torch.nn.functional.normalize(
            bert(d_ids, attention_mask=d["attention_mask"]).last_hidden_state @ linear.T, dim=2
        )
    q_mask = (q_ids != tokenizer.pad_token_id).numpy()
    d_mask = np.array(
        [[tok not in skiplist and tok != tokenizer.pad_token_id for tok in row] for row in d_ids.tolist()]
    )
    return naive_maxsim(q_vectors.numpy(), q_mask, d_vectors.numpy(), d_mask)


@pytest.mark.comparison
@pytest.mark.parametrize("attend", [False, True])
def test_stanford_checkpoint_round_trip(tmp_path, attend):
    metadata = {
        "dim": 8,
        "query_maxlen": 12,
        "doc_maxlen": 20,
        "mask_punctuation": True,
        "attend_to_mask_tokens": attend,
        "similarity": "cosine",
    }
    directory = write_stanford_checkpoint(tmp_path, metadata=metadata)
    model = ColBERTModel.from_pretrained(str(directory))
    assert model.config.convention == "stanford" and model.config.dim == 8 and model.linear.bias is None
    assert (model.config.query_max_length, model.config.passage_max_length) == (12, 20)
    expected = stanford_reference_scores(directory, QUERIES, PASSAGES, 12, 20, attend)
    np.testing.assert_allclose(model.score_matrix(QUERIES, PASSAGES, batch_size=2), expected, atol=1e-4)
    np.testing.assert_allclose(model.score(QUERIES, PASSAGES[:3]), np.diag(expected[:, :3]), atol=1e-4)
    # Saved in our format, the teacher gives the same scores back.
    model.save_pretrained(str(tmp_path / "ours"))
    again = ColBERTModel.from_pretrained(str(tmp_path / "ours"))
    np.testing.assert_allclose(again.score_matrix(QUERIES, PASSAGES), expected, atol=1e-4)


@pytest.mark.parametrize("metadata", [None, {"dim": 8}])
def test_stanford_checkpoint_without_settings_takes_stanford_defaults(tmp_path, metadata):
    # Defaults of stanford-futuredata/ColBERT colbert/infra/config/settings.py: query_maxlen 32, doc_maxlen 220,
    # attend_to_mask_tokens False, mask_punctuation True, similarity cosine, markers [unused0] / [unused1].
    model = ColBERTModel.from_pretrained(str(write_stanford_checkpoint(tmp_path, metadata=metadata)))
    config = model.config
    assert (config.query_max_length, config.passage_max_length, config.dim) == (32, 220, 8)
    assert config.attend_to_mask_tokens is False and config.skiplist_words == list(string.punctuation)
    assert (config.similarity, config.query_prefix, config.passage_prefix) == ("cosine", "[unused0] ", "[unused1] ")


def test_stanford_checkpoint_with_other_interaction_or_dim_is_refused(tmp_path):
    write_stanford_checkpoint(tmp_path, metadata={"interaction": "flipr"})
    with pytest.raises(OSError, match="interaction 'flipr' is not supported"):
        ColBERTModel.from_pretrained(str(tmp_path))
    (tmp_path / "artifact.metadata").write_text(json.dumps({"dim": 128}))
    with pytest.raises(OSError, match="dim=128 but linear.weight has 8 outputs"):
        ColBERTModel.from_pretrained(str(tmp_path))


def test_stanford_markers_stay_single_tokens(tmp_path):
    model = ColBERTModel.from_pretrained(str(write_stanford_checkpoint(tmp_path)))
    tokens = model.tokenizer.convert_ids_to_tokens(model.tokenize_queries(["paris"])["input_ids"][0].tolist())
    assert tokens[:4] == ["[CLS]", "[unused0]", "paris", "[SEP]"] and tokens[4:] == ["[MASK]"] * 28


def test_projection_hidden_size_mismatch_raises(tmp_path):
    directory = write_stanford_checkpoint(tmp_path)
    weights = __import__("safetensors.torch", fromlist=["load_file"]).load_file(str(directory / "model.safetensors"))
    weights["linear.weight"] = torch.randn(8, 48)
    save_file(weights, str(directory / "model.safetensors"))
    with pytest.raises(ValueError, match="projection expects hidden size 48 but the BERT backbone has hidden_size=32"):
        ColBERTModel.from_pretrained(str(directory))


# ---------------------------------------------------------------- sentence-transformers multi-vector


@pytest.fixture(scope="module")
def multi_vector_dir(tmp_path_factory):
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    base = write_tiny_bert(tmp_path_factory.mktemp("bert"), seed=5)
    torch.manual_seed(2)
    transformer = Transformer(
        str(base), query_expansion={"strategy": "fixed", "attend": False, "length": 16}, document_length=24
    )
    model = MultiVectorEncoder(
        modules=[
            transformer,
            Dense(32, 16, bias=True, activation_function=torch.nn.Identity(), module_input_name="token_embeddings"),
            MultiVectorMask(skiplist_words=list(string.punctuation)),
            Normalize(module_input_name="token_embeddings"),
        ],
        prompts={"query": "query ", "document": "passage "},
    )
    directory = tmp_path_factory.mktemp("mve")
    model.save(str(directory))
    scores = model.similarity(model.encode_query(QUERIES), model.encode_document(PASSAGES))
    return directory, scores.numpy()


@pytest.mark.comparison
def test_sentence_transformers_multi_vector_scores_match(multi_vector_dir):
    directory, expected = multi_vector_dir
    model = ColBERTModel.from_pretrained(str(directory))
    assert model.config.dim == 16 and model.linear.bias is not None
    np.testing.assert_allclose(model.score_matrix(QUERIES, PASSAGES), expected, atol=1e-4)


@pytest.mark.comparison
def test_pylate_directory_scores_match_sentence_transformers(tmp_path):
    """A PyLate v3 layout (modules Transformer + pylate Dense, prefixes and lengths at the top level)."""
    from sentence_transformers import MultiVectorEncoder

    directory = write_tiny_bert(tmp_path, seed=7)
    torch.manual_seed(4)
    dense = tmp_path / "1_Dense"
    dense.mkdir()
    save_file({"linear.weight": torch.randn(16, 32)}, str(dense / "model.safetensors"))
    (dense / "config.json").write_text(
        json.dumps(
            {
                "in_features": 32,
                "out_features": 16,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            }
        )
    )
    (tmp_path / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
            ]
        )
    )
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 30, "do_lower_case": False}))
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps(
            {
                "model_type": "ColBERT",
                "query_prefix": "[unused0]",
                "document_prefix": "[unused1]",
                "query_length": 12,
                "document_length": 30,
                "attend_to_expansion_tokens": False,
                "similarity_fn_name": "MaxSim",
            }
        )
    )
    reference = MultiVectorEncoder(str(directory))
    expected = reference.similarity(reference.encode_query(QUERIES), reference.encode_document(PASSAGES)).numpy()
    model = ColBERTModel.from_pretrained(str(directory))
    assert model.config.query_max_length == 12 and model.config.passage_max_length == 30
    np.testing.assert_allclose(model.score_matrix(QUERIES, PASSAGES), expected, atol=1e-4)


def test_dense_sentence_transformer_directory_starts_a_new_colbert_on_its_bert(tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    base = write_tiny_bert(tmp_path / "bert")
    SentenceTransformer(modules=[Transformer(str(base)), Pooling(32, "mean")]).save(str(tmp_path / "st"))
    model = ColBERTModel.from_pretrained(str(tmp_path / "st"), convention="stanford", dim=8)
    bert = BertModel.from_pretrained(str(base))
    torch.testing.assert_close(model.bert.embeddings.word_embeddings.weight, bert.embeddings.word_embeddings.weight)
    assert model.linear.weight.shape == (8, 32) and model.config.convention == "stanford"


# ---------------------------------------------------------------- TCT convention


@pytest.fixture(scope="module")
def tct_teacher(tmp_path_factory):
    base = write_tiny_bert(tmp_path_factory.mktemp("bert"), seed=9)
    return ColBERTModel.from_pretrained(str(base), convention="tct", dim=8), base


@pytest.mark.comparison
def test_tct_convention_equals_hand_formula(tct_teacher):
    model, base = tct_teacher
    assert model.linear.bias is not None and model.config.skip_positions == 4
    tokenizer = BertTokenizer.from_pretrained(str(base))
    bert = BertModel.from_pretrained(str(base)).eval()
    weight, bias = model.linear.weight.detach(), model.linear.bias.detach()
    q = tokenizer(
        ["[CLS] [Q] " + x + "[MASK]" * 36 for x in QUERIES],
        max_length=36,
        truncation=True,
        add_special_tokens=False,
        padding="longest",
        return_tensors="pt",
    )
    d = tokenizer(
        ["[CLS] [D] " + x for x in PASSAGES],
        max_length=512,
        truncation=True,
        add_special_tokens=False,
        padding="longest",
        return_tensors="pt",
    )
    with torch.no_grad():
        q_vectors = (bert(**q).last_hidden_state @ weight.T + bias)[:, 4:]  # not normalized
        d_vectors = torch.nn.functional.normalize(bert(**d).last_hidden_state @ weight.T + bias, dim=-1)[:, 4:]
    q_mask = np.ones(q_vectors.shape[:2], dtype=bool)
    d_mask = d["attention_mask"][:, 4:].bool().numpy()
    expected = naive_maxsim(q_vectors.numpy(), q_mask, d_vectors.numpy(), d_mask)
    np.testing.assert_allclose(model.score_matrix(QUERIES, PASSAGES), expected, atol=1e-4)


def test_forward_scores_equal_score_matrix_and_carry_gradients(tct_teacher):
    model, _ = tct_teacher
    queries, passages = model.tokenize_queries(QUERIES), model.tokenize_passages(PASSAGES)
    output = model(
        query_input_ids=queries["input_ids"],
        query_attention_mask=queries["attention_mask"],
        passage_input_ids=passages["input_ids"],
        passage_attention_mask=passages["attention_mask"],
    )
    assert output.scores.shape == (3, 4) and output.scores.requires_grad
    np.testing.assert_allclose(output.scores.detach().numpy(), model.score_matrix(QUERIES, PASSAGES), atol=1e-4)


def test_auto_classes_resolve_the_teacher(tct_teacher, tmp_path):
    from transformers import AutoConfig, AutoModel

    model, _ = tct_teacher
    model.save_pretrained(str(tmp_path))
    assert isinstance(AutoConfig.from_pretrained(str(tmp_path)), ColBERTConfig)
    assert isinstance(AutoModel.from_pretrained(str(tmp_path)), ColBERTModel)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m: m.score_matrix(["ok", ""], ["p"]), r"queries\[1\] is an empty string"),
        (lambda m: m.score_matrix(["ok"], [None]), r"passages\[0\] must be a str"),
        (lambda m: m.score(["a", "b"], ["p"]), "one passage per query"),
        (lambda m: m.score("a", ["p"]), "must be a list of strings"),
        (lambda m: m.score_matrix(["a"], [7]), r"passages\[0\] must be a str, got int"),
        (lambda m: m.score_matrix(["a"], ["\u200b"]), "no scored token"),
    ],
)
def test_bad_input_raises(tct_teacher, call, message):
    with pytest.raises(ValueError, match=message):
        call(tct_teacher[0])


def test_not_a_checkpoint_directory_raises(tmp_path):
    with pytest.raises(OSError, match="no config.json"):
        ColBERTModel.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["HF_ColBERT"]}))
    with pytest.raises(OSError, match="no model.safetensors"):
        ColBERTModel.from_pretrained(str(tmp_path))


@pytest.mark.parametrize(
    "field, value",
    [("convention", "other"), ("similarity", "l2"), ("dim", 0), ("skip_positions", -1), ("skiplist_words", "abc")],
)
def test_config_validation(field, value):
    with pytest.raises(ValueError, match=field):
        ColBERTConfig(**{field: value})


def test_convention_defaults_and_explicit_override():
    stanford = ColBERTConfig(convention="stanford")
    assert (stanford.query_prefix, stanford.projection_bias, stanford.normalize_queries) == ("[unused0] ", False, True)
    tct = ColBERTConfig(convention="tct", normalize_queries=True)
    assert (tct.query_prefix, tct.skip_positions, tct.normalize_queries) == ("[CLS] [Q] ", 4, True)


@pytest.mark.parametrize("unpadded", [True, 3])
def test_unpadded_passage_tokens_equal_the_padded_ones(tct_teacher, unpadded):
    tct_teacher, _ = tct_teacher
    texts = [PASSAGES[1], "music", PASSAGES[0], "a b"]
    batch = tct_teacher.tokenize_passages(texts)
    assert batch["attention_mask"].sum() < batch["attention_mask"].numel()  # the batch has padding to remove
    with torch.no_grad():
        padded, padded_mask = tct_teacher.encode_passage_tokens(batch["input_ids"], batch["attention_mask"])
        unpadded_tokens, unpadded_mask = tct_teacher.encode_passage_tokens(
            batch["input_ids"], batch["attention_mask"], unpadded=unpadded
        )
    torch.testing.assert_close(unpadded_mask, padded_mask, atol=0, rtol=0)
    torch.testing.assert_close(unpadded_tokens[padded_mask], padded[padded_mask], atol=1e-5, rtol=0)
