"""Hub upload with `HfApi` replaced by a recorder: what would be uploaded, and what a failure leaves behind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import write_tiny_bert  # noqa: E402

from tct_hf import TCTModel  # noqa: E402
from tct_hf.hub import HubUploadError, push_model_dir, render_student_card  # noqa: E402


class RecordingApi:
    """Stands in for `HfApi`: records calls and the folder's files at upload time; can fail like a dead network."""

    def __init__(self, fail_with: Exception | None = None):
        self.fail_with = fail_with
        self.created: list[str] = []
        self.uploaded_files: list[str] = []

    def create_repo(self, repo_id, private=None, exist_ok=False, token=None):
        self.created.append(repo_id)

    def upload_folder(self, repo_id, folder_path, commit_message=None, token=None):
        if self.fail_with is not None:
            raise self.fail_with
        root = Path(folder_path)
        self.uploaded_files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        return type("Commit", (), {"commit_url": f"https://huggingface.co/{repo_id}/commit/abc"})()


@pytest.fixture()
def saved_student(tmp_path) -> Path:
    backbone = write_tiny_bert(tmp_path / "backbone")
    out = tmp_path / "student"
    TCTModel.from_pretrained(backbone).save_pretrained(out)
    return out


def test_upload_sends_weights_code_sentence_transformers_files_and_card(saved_student):
    card = render_student_card(
        repo_id="me/tct-tiny", base_model="tiny", teacher="me/colbert", kd_mode="in_batch", metrics={"nDCG@10": 0.5}
    )
    api = RecordingApi()
    url = push_model_dir(saved_student, "me/tct-tiny", card=card, api=api)
    assert url.endswith("/commit/abc") and api.created == ["me/tct-tiny"]
    expected = {
        "README.md",
        "config.json",
        "model.safetensors",
        "configuration_tct.py",
        "modeling_tct.py",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    }
    assert expected <= set(api.uploaded_files), expected - set(api.uploaded_files)
    config = json.loads((saved_student / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_tct.TCTModel"
    readme = (saved_student / "README.md").read_text()
    assert 'SentenceTransformer("me/tct-tiny")' in readme and "trust_remote_code=True" in readme
    assert "| nDCG@10 | 0.5000 |" in readme and "Lin, Sheng-Chieh" in readme


def test_network_failure_keeps_the_local_output_and_says_what_failed(saved_student):
    before = {p.name: p.read_bytes() for p in saved_student.iterdir() if p.is_file()}
    api = RecordingApi(fail_with=ConnectionError("Name or service not known"))
    with pytest.raises(HubUploadError, match=r"me/tct-tiny failed \(ConnectionError: Name or service not known\)"):
        push_model_dir(saved_student, "me/tct-tiny", api=api)
    after = {p.name: p.read_bytes() for p in saved_student.iterdir() if p.is_file()}
    assert after == before


def test_refuses_a_directory_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing config.json, model.safetensors"):
        push_model_dir(tmp_path, "me/nothing", api=RecordingApi())
