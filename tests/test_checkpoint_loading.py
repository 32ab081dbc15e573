"""Save/load round trips: our classes, `AutoModel(trust_remote_code=True)` and `SentenceTransformer(dir)` (no remote
code) in fresh processes where tct_hf cannot be imported."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from utils import run_isolated, write_tiny_bert

from tct_hf import ColBERTModel, TCTModel

QUERIES = ["what is the boiling temperature of water", "paris"]
PASSAGES = ["water boils at high temperature in paris.", "the boundary layer of a wing"]


@pytest.fixture(scope="module")
def saved_student(tmp_path_factory):
    base = write_tiny_bert(tmp_path_factory.mktemp("bert"), pretraining_heads=True, seed=11)
    model = TCTModel.from_pretrained(str(base))
    directory = tmp_path_factory.mktemp("student")
    model.save_pretrained(str(directory))
    return model, directory


def test_student_round_trip_with_our_class(saved_student):
    model, directory = saved_student
    again = TCTModel.from_pretrained(str(directory))
    np.testing.assert_array_equal(again.encode_queries(QUERIES), model.encode_queries(QUERIES))
    np.testing.assert_array_equal(again.encode_passages(PASSAGES), model.encode_passages(PASSAGES))
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "bert" and config["auto_map"]["AutoModel"] == "modeling_tct.TCTModel"
    assert (directory / "modeling_tct.py").is_file() and (directory / "model.safetensors").is_file()
    assert not (directory / "pytorch_model.bin").exists()


def test_student_sentence_transformers_files(saved_student):
    _, directory = saved_student
    modules = json.loads((directory / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling"]
    st_config = json.loads((directory / "config_sentence_transformers.json").read_text())
    assert st_config["prompts"] == {"query": "[CLS] [Q] ", "document": "[CLS] [D] "}
    assert st_config["similarity_fn_name"] == "dot"
    pooling = json.loads((directory / "1_Pooling" / "config.json").read_text())
    assert pooling == {"embedding_dimension": 32, "pooling_mode": "mean", "include_prompt": False}
    transformer = json.loads((directory / "sentence_bert_config.json").read_text())
    assert transformer["query_expansion"]["length"] == 36 and transformer["document_length"] == 512
    assert transformer["processing_kwargs"] == {"text": {"add_special_tokens": False}}


@pytest.mark.comparison
def test_student_loads_in_sentence_transformers_without_remote_code(saved_student, tmp_path):
    model, directory = saved_student
    code = f"""
import json
from sentence_transformers import SentenceTransformer
model = SentenceTransformer({str(directory)!r})
print("RESULT " + json.dumps({{
    "backbone": type(model[0].auto_model).__name__,
    "queries": model.encode_query({QUERIES!r}).tolist(),
    "passages": model.encode_document({PASSAGES!r}).tolist(),
}}))
"""
    result = run_isolated(code, tmp_path)
    assert result["backbone"] == "BertModel"
    np.testing.assert_allclose(np.array(result["queries"]), model.encode_queries(QUERIES), atol=1e-5)
    np.testing.assert_allclose(np.array(result["passages"]), model.encode_passages(PASSAGES), atol=1e-5)


def test_student_and_teacher_load_with_remote_code_without_tct_hf(saved_student, tmp_path):
    model, directory = saved_student
    teacher = ColBERTModel.from_pretrained(str(write_tiny_bert(tmp_path / "bert", seed=12)), convention="stanford")
    teacher.save_pretrained(str(tmp_path / "teacher"))
    # Each directory carries its own model's code (and the text checks, loading checks and unpadded forward both
    # models share), nothing of the other model.
    shared = {"text_inputs.py", "loading_checks.py", "bert_unpadded.py"}
    teacher_files = {p.name for p in (tmp_path / "teacher").glob("*.py")}
    assert teacher_files == {"configuration_colbert.py", "modeling_colbert.py"} | shared
    assert {p.name for p in directory.glob("*.py")} == {"configuration_tct.py", "modeling_tct.py"} | shared
    code = f"""
import json
from transformers import AutoModel
student = AutoModel.from_pretrained({str(directory)!r}, trust_remote_code=True)
teacher = AutoModel.from_pretrained({str(tmp_path / "teacher")!r}, trust_remote_code=True)
print("RESULT " + json.dumps({{
    "student": type(student).__name__,
    "teacher": type(teacher).__name__,
    "queries": student.encode_queries({QUERIES!r}).tolist(),
    "scores": teacher.score_matrix({QUERIES!r}, {PASSAGES!r}).tolist(),
}}))
"""
    result = run_isolated(code, tmp_path)
    assert (result["student"], result["teacher"]) == ("TCTModel", "ColBERTModel")
    np.testing.assert_allclose(np.array(result["queries"]), model.encode_queries(QUERIES), atol=1e-6)
    np.testing.assert_allclose(np.array(result["scores"]), teacher.score_matrix(QUERIES, PASSAGES), atol=1e-5)


def test_isolation_really_hides_tct_hf(tmp_path):
    result = run_isolated(
        "import json, importlib.util\nprint('RESULT ' + json.dumps(importlib.util.find_spec('tct_hf')))", tmp_path
    )
    assert result is None


# What each travelling file may import besides the standard library and its travelling neighbours (relative imports):
# the modules each header names.
TRAVELLING_FILES = {
    "configuration_tct.py": {"transformers"},
    "configuration_colbert.py": {"transformers"},
    "modeling_tct.py": {"torch", "numpy", "transformers"},
    "modeling_colbert.py": {"torch", "numpy", "transformers"},
    "text_inputs.py": set(),
    "bert_unpadded.py": {"torch", "transformers"},
    "loading_checks.py": {"transformers"},
}


@pytest.mark.parametrize("name", sorted(TRAVELLING_FILES))
def test_travelling_files_import_only_what_their_headers_say(name):
    import ast

    path = Path(__file__).resolve().parents[1] / "tct_hf" / name
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == TRAVELLING_FILES[name]
    header = ast.get_docstring(tree)
    for module in third_party:
        assert module in header, f"{name}'s header does not say it imports {module}"
    relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert relative <= {Path(other).stem for other in TRAVELLING_FILES}, relative
