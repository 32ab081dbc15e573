"""Loading checks what it loads: another architecture is refused with a message naming it and what to do, and a load
that would leave a backbone weight freshly initialised is an error, in the classes, `tct-hf encode` and
`examples/train_tct.py` alike. The one exception is the new projection of a new teacher started on a plain BERT."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertModel, DistilBertConfig, DistilBertModel
from utils import write_tiny_bert, write_tokenizer

from tct_hf import ColBERTModel, TCTModel

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def distilbert(tmp_path_factory) -> Path:
    """A tiny DistilBERT of the tiny BERT's hidden size, with the same tokenizer (BERT's vocabulary)."""
    directory = tmp_path_factory.mktemp("distilbert")
    tokenizer = write_tokenizer(directory)
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=37)
    DistilBertModel(config).save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("bert"), seed=4)


def test_another_architecture_is_refused_by_name(distilbert):
    for load in (
        lambda: TCTModel.from_pretrained(str(distilbert)),
        lambda: ColBERTModel.from_pretrained(str(distilbert)),
    ):
        with pytest.raises(
            OSError, match=r"model_type 'distilbert' \(DistilBertModel\) model; \w+ is a BERT"
        ) as caught:
            load()
        assert "start from a BERT checkpoint" in str(caught.value)


def test_a_sentence_transformers_directory_is_pointed_to_sentence_transformers(distilbert, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    SentenceTransformer(modules=[Transformer(str(distilbert)), Pooling(32, "mean")]).save(str(tmp_path / "st"))
    with pytest.raises(OSError, match=r"it is a sentence-transformers directory: load it with SentenceTransformer"):
        TCTModel.from_pretrained(str(tmp_path / "st"))


def test_cli_encode_refuses_another_architecture_in_one_line(distilbert, tmp_path):
    import contextlib
    import io

    from tct_hf.cli import main

    (tmp_path / "corpus.tsv").write_text("d1\twater boils\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(["encode", "--model", str(distilbert), "--corpus", str(tmp_path / "corpus.tsv"), "--output",
                       str(tmp_path / "ix")])  # fmt: skip
    assert (
        status == 2 and "model_type 'distilbert'" in err.getvalue() and len(err.getvalue().strip().splitlines()) == 1
    )
    assert not (tmp_path / "ix").exists()


def test_train_tct_refuses_another_architecture_as_student(distilbert, tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    import train_tct

    arguments = ["--student_model", str(distilbert), "--output_dir", str(tmp_path / "out"), "--kd_mode", "none",
                 "--max_steps", "1", "--use_cpu", "true", "--bf16", "false"]  # fmt: skip
    with pytest.raises(OSError, match="model_type 'distilbert'"):
        train_tct.main(arguments)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def drop_weights(source: Path, directory: Path, prefix: str) -> Path:
    """A copy of a checkpoint directory whose weights lack every tensor whose name starts with `prefix`."""
    directory.mkdir()
    for path in source.iterdir():
        if path.is_file() and path.name != "model.safetensors":
            (directory / path.name).write_bytes(path.read_bytes())
    weights = load_file(str(source / "model.safetensors"))
    save_file(
        {key: value for key, value in weights.items() if not key.startswith(prefix)},
        str(directory / "model.safetensors"),
    )
    return directory


def test_missing_backbone_weights_are_an_error(bert, tmp_path):
    truncated = drop_weights(bert, tmp_path / "truncated", "encoder.layer.1.")
    with pytest.raises(
        OSError, match=r"weight\(s\) of TCTModel are missing from the checkpoint .*bert\.encoder\.layer\.1"
    ):
        TCTModel.from_pretrained(str(truncated))
    with pytest.raises(OSError, match=r"of ColBERTModel are missing .*bert\.encoder\.layer\.1"):
        ColBERTModel.from_pretrained(str(truncated), dim=8)  # a new teacher: only its projection may be new
    config = json.loads((bert / "config.json").read_text())
    deeper = tmp_path / "deeper"
    drop_weights(bert, deeper, "no-such-prefix")
    (deeper / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))  # layer 2 is nowhere
    with pytest.raises(OSError, match=r"bert\.encoder\.layer\.2"):
        TCTModel.from_pretrained(str(deeper))


def test_our_teacher_without_its_projection_is_an_error_but_a_new_teacher_is_not(bert, tmp_path):
    teacher = ColBERTModel.from_pretrained(str(bert), dim=8)  # new projection: the documented exception
    teacher.save_pretrained(str(tmp_path / "teacher"))
    again = ColBERTModel.from_pretrained(str(tmp_path / "teacher"))
    np.testing.assert_array_equal(again.linear.weight.detach().numpy(), teacher.linear.weight.detach().numpy())
    drop_weights(tmp_path / "teacher", tmp_path / "no_linear", "linear.")
    with pytest.raises(OSError, match=r"linear\.bias, linear\.weight"):
        ColBERTModel.from_pretrained(str(tmp_path / "no_linear"))


def test_student_without_pooler_loads_and_is_deterministic(tmp_path):
    """The pooler is not part of the embeddings: a BERT saved without it (e.g. from BertForMaskedLM) loads, and two
    loads give identical vectors."""
    directory = write_tiny_bert(tmp_path / "bert", seed=6)
    BertModel.from_pretrained(str(directory), add_pooling_layer=False).save_pretrained(str(directory))
    assert not any(key.startswith("pooler.") for key in load_file(str(directory / "model.safetensors")))
    first, second = TCTModel.from_pretrained(str(directory)), TCTModel.from_pretrained(str(directory))
    np.testing.assert_array_equal(first.encode_queries(["paris"]), second.encode_queries(["paris"]))
