"""Upload a saved model directory to the Hugging Face Hub, keeping the local copy whatever happens."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, ModelCard

REQUIRED_FILES = ("config.json", "model.safetensors")


class HubUploadError(RuntimeError):
    """The upload failed; the local directory is intact and named in the message."""


def push_model_dir(
    model_dir: str | Path,
    repo_id: str,
    *,
    card: ModelCard | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload with tct_hf",
    api: HfApi | None = None,
) -> str:
    """Write `card` as README.md into `model_dir`, create `repo_id` if needed and upload the whole folder.

    The directory must already hold a complete checkpoint (config.json, model.safetensors; for students also the
    sentence-transformers files and the `auto_map` code that `save_pretrained` writes). Returns the commit URL.
    Raises `HubUploadError` (with the local path, which is left as it was) when the Hub cannot be reached or refuses.
    """
    model_dir = Path(model_dir)
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{model_dir} is not a saved checkpoint (missing {', '.join(missing)}); call save_pretrained first"
        )
    if card is not None:
        card.save(str(model_dir / "README.md"))
    api = api or HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, token=token)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=str(model_dir), commit_message=commit_message, token=token
        )
    except Exception as error:  # network, auth, offline mode: all end the same way for the user
        raise HubUploadError(
            f"upload of {model_dir} to {repo_id} failed ({type(error).__name__}: {error}); "
            f"the local output in {model_dir} is intact — retry with `hf upload {repo_id} {model_dir}`"
        ) from error
    return str(getattr(commit, "commit_url", commit))
