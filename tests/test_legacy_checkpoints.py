"""Published checkpoints as they are: `.bin`-only weights (torch's weights_only unpickler), 2021-era config.json
files, BERT keys with or without the `bert.` prefix and with `cls.*` heads, tokenizers without tokenizer.json.

Every layout is rebuilt here from one tiny random BERT and must give exactly the vectors (or scores) of the same
weights saved as safetensors; a crafted pickle that would write a marker file when unpickled must be refused
everywhere a model is loaded, and the marker must not appear."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from utils import run_isolated, tiny_vocab, write_tiny_bert

from tct_hf import ColBERTModel, TCTModel
from tct_hf.conversion import read_weights

QUERIES = ["what is the boiling temperature of water", "paris"]
PASSAGES = ["water boils at high temperature in paris.", "the boundary layer of a wing", "music"]
BERT_FIELDS = (
    "attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob", "hidden_size", "initializer_range",
    "intermediate_size", "max_position_embeddings", "num_attention_heads", "num_hidden_layers", "type_vocab_size",
    "vocab_size",
)  # fmt: skip


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny random BertForPreTraining (bert.* + cls.* keys) saved as safetensors with a tokenizer.json."""
    return write_tiny_bert(tmp_path_factory.mktemp("base"), pretraining_heads=True, seed=21)


@pytest.fixture(scope="module")
def reference(base):
    model = TCTModel.from_pretrained(str(base))
    return model.encode_queries(QUERIES), model.encode_passages(PASSAGES)


def base_config(base: Path) -> dict:
    return json.loads((base / "config.json").read_text())


def write_legacy(base: Path, directory: Path, *, config: str, prefix: bool, heads: bool, tokenizer: str) -> Path:
    """The same weights in a 2019/2021-era layout: `pytorch_model.bin` written by torch.save (transformers 5 always
    writes safetensors), keys with or without `bert.`, with or without `cls.*`, and the tokenizer either as
    vocab.txt + tokenizer_config.json + special_tokens_map.json (no tokenizer.json) or as saved today."""
    directory.mkdir(parents=True)
    state_dict = load_file(str(base / "model.safetensors"))
    if not heads:
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith("cls.")}
    if not prefix:
        state_dict = {key.removeprefix("bert."): value for key, value in state_dict.items()}
    torch.save(state_dict, directory / "pytorch_model.bin")
    values = base_config(base)
    fields = {key: values[key] for key in BERT_FIELDS}
    if config == "2019":  # Google's bert_config.json as converted then: BERT fields only, no model_type
        written = fields
    else:  # transformers 4.x in 2021: model_type, architectures, version and since-removed fields
        architecture = "BertForPreTraining" if heads else "BertModel"
        written = {
            "architectures": [architecture], **fields, "gradient_checkpointing": False, "layer_norm_eps": 1e-12,
            "model_type": "bert", "pad_token_id": 0, "position_embedding_type": "absolute",
            "transformers_version": "4.3.3", "use_cache": True,
        }  # fmt: skip
    (directory / "config.json").write_text(json.dumps(written))
    if tokenizer == "legacy":
        (directory / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n")
        (directory / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "model_max_length": 512}))
        special = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]"}
        (directory / "special_tokens_map.json").write_text(json.dumps({**special, "mask_token": "[MASK]"}))
    else:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(base / name, directory / name)
    return directory


LAYOUTS = [
    {"config": config, "prefix": prefix, "heads": heads, "tokenizer": tokenizer}
    for config in ("2019", "2021")
    for prefix in (True, False)
    for heads in (True, False)
    for tokenizer in ("legacy", "current")
    if prefix or not heads  # cls.* heads come with bert.* keys (BertForPreTraining)
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: "-".join(str(v) for v in layout.values()))
def test_bin_only_layouts_give_the_safetensors_vectors(base, reference, tmp_path, layout):
    directory = write_legacy(base, tmp_path / "legacy", **layout)
    model = TCTModel.from_pretrained(str(directory))
    np.testing.assert_array_equal(model.encode_queries(QUERIES), reference[0])
    np.testing.assert_array_equal(model.encode_passages(PASSAGES), reference[1])
    assert model.tokenizer.tokenize("[CLS] [Q] paris") == ["[CLS]", "[", "q", "]", "paris"]


def test_safetensors_are_preferred_when_both_exist(base, reference, tmp_path):
    directory = write_legacy(base, tmp_path / "both", config="2021", prefix=True, heads=True, tokenizer="current")
    other = {key: torch.randn_like(value) for key, value in torch.load(directory / "pytorch_model.bin").items()}
    torch.save(other, directory / "pytorch_model.bin")  # different weights in the .bin
    shutil.copy(base / "model.safetensors", directory / "model.safetensors")
    np.testing.assert_array_equal(TCTModel.from_pretrained(str(directory)).encode_queries(QUERIES), reference[0])
    assert set(read_weights(directory)) == set(load_file(str(base / "model.safetensors")))


def test_saved_copy_is_safetensors_and_loads_in_sentence_transformers(base, reference, tmp_path):
    legacy = write_legacy(base, tmp_path / "legacy", config="2019", prefix=False, heads=False, tokenizer="legacy")
    TCTModel.from_pretrained(str(legacy)).save_pretrained(str(tmp_path / "copy"))
    assert (tmp_path / "copy" / "model.safetensors").is_file()
    assert not (tmp_path / "copy" / "pytorch_model.bin").exists()
    code = f"""
import json
from sentence_transformers import SentenceTransformer
model = SentenceTransformer({str(tmp_path / "copy")!r})
print("RESULT " + json.dumps({{"queries": model.encode_query({QUERIES!r}).tolist(),
                               "passages": model.encode_document({PASSAGES!r}).tolist()}}))
"""
    result = run_isolated(code, tmp_path)
    np.testing.assert_allclose(np.array(result["queries"]), reference[0], atol=1e-5)
    np.testing.assert_allclose(np.array(result["passages"]), reference[1], atol=1e-5)


def to_bin_only(directory: Path) -> Path:
    """Replace a directory's model.safetensors by a pytorch_model.bin holding the same tensors."""
    torch.save(load_file(str(directory / "model.safetensors")), directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    return directory


@pytest.fixture(scope="module")
def saved_pair(base, tmp_path_factory):
    """Our saved student and teacher, then turned into .bin-only directories; with their expected outputs."""
    root = tmp_path_factory.mktemp("saved")
    student, teacher = TCTModel.from_pretrained(str(base)), ColBERTModel.from_pretrained(str(base), dim=8)
    student.save_pretrained(str(root / "student"))
    teacher.save_pretrained(str(root / "teacher"))
    expected = {"queries": student.encode_queries(QUERIES), "scores": teacher.score_matrix(QUERIES, PASSAGES)}
    return to_bin_only(root / "student"), to_bin_only(root / "teacher"), expected


def test_our_bin_only_copies_load_with_our_classes_and_remote_code(saved_pair, tmp_path):
    student_dir, teacher_dir, expected = saved_pair
    np.testing.assert_array_equal(
        TCTModel.from_pretrained(str(student_dir)).encode_queries(QUERIES), expected["queries"]
    )
    teacher = ColBERTModel.from_pretrained(str(teacher_dir))
    np.testing.assert_allclose(teacher.score_matrix(QUERIES, PASSAGES), expected["scores"], atol=1e-6)
    code = f"""
import json
from transformers import AutoModel
student = AutoModel.from_pretrained({str(student_dir)!r}, trust_remote_code=True)
teacher = AutoModel.from_pretrained({str(teacher_dir)!r}, trust_remote_code=True)
print("RESULT " + json.dumps({{"classes": [type(student).__name__, type(teacher).__name__],
                               "queries": student.encode_queries({QUERIES!r}).tolist(),
                               "scores": teacher.score_matrix({QUERIES!r}, {PASSAGES!r}).tolist()}}))
"""
    result = run_isolated(code, tmp_path)
    assert result["classes"] == ["TCTModel", "ColBERTModel"]
    np.testing.assert_allclose(np.array(result["queries"]), expected["queries"], atol=1e-6)
    np.testing.assert_allclose(np.array(result["scores"]), expected["scores"], atol=1e-5)


# ---------------------------------------------------------------- a pickle that would run code


class WritesMarker:
    """Unpickled without restriction, this object calls `exec`, which writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def poison(directory: Path, marker: Path) -> Path:
    """Add an object whose unpickling writes `marker` to the directory's pytorch_model.bin."""
    state_dict = torch.load(directory / "pytorch_model.bin", weights_only=True)
    state_dict["bert.embeddings.extra"] = WritesMarker(marker)
    torch.save(state_dict, directory / "pytorch_model.bin")
    return directory


@pytest.fixture
def poisoned(base, saved_pair, tmp_path):
    """A .bin-only BERT, our .bin-only student and teacher, and a Stanford .bin-only checkpoint, all poisoned."""
    marker = tmp_path / "MARKER"
    bert = poison(
        write_legacy(base, tmp_path / "bert", config="2021", prefix=True, heads=True, tokenizer="legacy"), marker
    )
    student = poison(Path(shutil.copytree(saved_pair[0], tmp_path / "student")), marker)
    teacher = poison(Path(shutil.copytree(saved_pair[1], tmp_path / "teacher")), marker)
    stanford = Path(shutil.copytree(saved_pair[1], tmp_path / "stanford"))
    config = json.loads((stanford / "config.json").read_text())
    (stanford / "config.json").write_text(
        json.dumps({**config, "architectures": ["HF_ColBERT"], "model_type": "bert"})
    )
    poison(stanford, marker)
    return marker, {"bert": bert, "student": student, "teacher": teacher, "stanford": stanford}


def test_crafted_pickle_is_refused_everywhere_and_runs_nothing(poisoned, tmp_path):
    marker, dirs = poisoned
    loads = {
        "TCTModel(bert)": lambda: TCTModel.from_pretrained(str(dirs["bert"])),
        "TCTModel(student)": lambda: TCTModel.from_pretrained(str(dirs["student"])),
        "ColBERTModel(bert)": lambda: ColBERTModel.from_pretrained(str(dirs["bert"]), dim=8),
        "ColBERTModel(teacher)": lambda: ColBERTModel.from_pretrained(str(dirs["teacher"])),
        "ColBERTModel(stanford)": lambda: ColBERTModel.from_pretrained(str(dirs["stanford"])),
    }
    for name, load in loads.items():
        with pytest.raises(OSError, match="refused to load") as caught:
            load()
        assert "pytorch_model.bin" in str(caught.value) and "Nothing in it ran" in str(caught.value), name
        assert not marker.exists(), name
    # Remote code, without tct_hf: the same refusal.
    code = f"""
import json
from transformers import AutoModel
errors = []
for path in ({str(dirs["student"])!r}, {str(dirs["teacher"])!r}):
    try:
        AutoModel.from_pretrained(path, trust_remote_code=True)
        errors.append("loaded")
    except OSError as error:
        errors.append(str(error))
print("RESULT " + json.dumps(errors))
"""
    for message, directory in zip(run_isolated(code, tmp_path), (dirs["student"], dirs["teacher"])):
        assert message.startswith(f"{directory / 'pytorch_model.bin'}: refused to load"), message
    assert not marker.exists()
    # The CLI: one line naming the file, exit status 2, no index written.
    (tmp_path / "corpus.tsv").write_text("d1\twater boils\n")
    status, err = cli(
        "encode", "--model", dirs["bert"], "--corpus", tmp_path / "corpus.tsv", "--output", tmp_path / "ix"
    )
    assert status == 2 and "pytorch_model.bin: refused to load" in err and len(err.strip().splitlines()) == 1, err
    assert not marker.exists() and not (tmp_path / "ix").exists()
    # The test is meaningful: an unrestricted unpickler does run the payload.
    torch.load(dirs["bert"] / "pytorch_model.bin", weights_only=False)
    assert marker.read_text() == "code ran"


# ---------------------------------------------------------------- the README's first example, offline


def fake_hub_cache(cache: Path, repo_id: str, files: Path) -> None:
    """Lay `files` out as huggingface_hub's cache of `repo_id` at one commit, as a download would have left it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(files, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


def test_readme_example_with_the_published_layout(base, reference, tmp_path):
    """`TCTModel.from_pretrained("castorini/tct_colbert-v2-hnp-msmarco")` on a cached repository laid out like the
    published one (.bin only, 2021 config, vocab.txt tokenizer), and a .bin-only Stanford repository."""
    legacy = write_legacy(base, tmp_path / "v2", config="2021", prefix=False, heads=False, tokenizer="legacy")
    fake_hub_cache(tmp_path / "cache", "castorini/tct_colbert-v2-hnp-msmarco", legacy)
    model = TCTModel.from_pretrained("castorini/tct_colbert-v2-hnp-msmarco", cache_dir=str(tmp_path / "cache"))
    np.testing.assert_array_equal(model.encode_queries(QUERIES), reference[0])
    stanford = write_legacy(base, tmp_path / "v19", config="2021", prefix=True, heads=False, tokenizer="legacy")
    weights = torch.load(stanford / "pytorch_model.bin", weights_only=True)
    weights["linear.weight"] = torch.randn(8, 32)
    torch.save(weights, stanford / "pytorch_model.bin")
    config = json.loads((stanford / "config.json").read_text())
    (stanford / "config.json").write_text(json.dumps({**config, "architectures": ["HF_ColBERT"]}))
    local = ColBERTModel.from_pretrained(str(stanford))
    fake_hub_cache(tmp_path / "cache", "colbert-ir/colbertv1.9", stanford)
    hub = ColBERTModel.from_pretrained("colbert-ir/colbertv1.9", cache_dir=str(tmp_path / "cache"))
    assert hub.config.passage_max_length == 220 and hub.config.convention == "stanford"
    np.testing.assert_array_equal(hub.score_matrix(QUERIES, PASSAGES), local.score_matrix(QUERIES, PASSAGES))


def cli(*args) -> tuple[int, str]:
    """Run `tct-hf` in-process; returns (status, stderr)."""
    import contextlib
    import io

    from tct_hf.cli import main

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit_:
            status = exit_.code
    return status, err.getvalue()


def test_cli_encodes_and_searches_with_a_bin_only_checkpoint(base, reference, tmp_path):
    from tct_hf.data.run_files import read_run
    from tct_hf.retrieval.index import load_index

    legacy = write_legacy(base, tmp_path / "legacy", config="2021", prefix=True, heads=True, tokenizer="legacy")
    (tmp_path / "corpus.tsv").write_text("".join(f"d{i}\t{text}\n" for i, text in enumerate(PASSAGES)))
    (tmp_path / "queries.tsv").write_text("".join(f"q{i}\t{text}\n" for i, text in enumerate(QUERIES)))
    status, err = cli("encode", "--model", legacy, "--corpus", tmp_path / "corpus.tsv", "--output", tmp_path / "ix")
    assert status == 0, err
    index = load_index(tmp_path / "ix")
    np.testing.assert_allclose(index.faiss_index.reconstruct_n(0, index.count), reference[1], atol=1e-6)
    status, err = cli(
        "search", "--model", legacy, "--index", tmp_path / "ix", "--queries", tmp_path / "queries.tsv",
        "--output", tmp_path / "run.trec", "--k", 3,
    )  # fmt: skip
    assert status == 0, err
    run = read_run(tmp_path / "run.trec")
    expected = reference[0] @ reference[1].T
    for row, qid in enumerate(("q0", "q1")):
        np.testing.assert_allclose([run[qid][f"d{i}"] for i in range(3)], expected[row], rtol=1e-5)
