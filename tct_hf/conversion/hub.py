"""Foreign checkpoints on the Hub: look at ``config.json`` / ``modules.json`` first, download the rest only when the
repository is a Stanford or multi-vector one (our own and plain BERT repositories are left to ``from_pretrained``)."""

from __future__ import annotations

from pathlib import Path

from .files import read_json

# What a converter reads: configs, tokenizer files, Stanford's metadata and the weights (safetensors first).
METADATA_PATTERNS = ["*.json", "*.txt", "artifact.metadata", "*.model"]


def _download_options(hub_kwargs: dict) -> dict:
    unknown = set(hub_kwargs) - {"revision", "cache_dir", "token", "local_files_only", "subfolder"}
    if unknown:
        raise TypeError(f"unexpected Hub arguments {sorted(unknown)}.")
    if hub_kwargs.get("subfolder"):
        raise OSError("a foreign (Stanford / multi-vector) checkpoint in a Hub subfolder is not supported.")
    names = ("revision", "cache_dir", "token", "local_files_only")
    return {key: hub_kwargs[key] for key in names if key in hub_kwargs}


def _optional_file(repo_id: str, filename: str, options: dict) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, **options))
    except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError):
        return None


def foreign_hub_snapshot(repo_id: str, **hub_kwargs) -> Path | None:
    """The local snapshot of ``repo_id`` when it is a Stanford ColBERT or multi-vector repository, else None."""
    if repo_id.count("/") > 1 or repo_id.startswith((".", "/", "~")):
        return None  # a path that does not exist: from_pretrained reports it
    options = _download_options(hub_kwargs)
    config_path = _optional_file(repo_id, "config.json", options)
    modules_path = _optional_file(repo_id, "modules.json", options)
    stanford = config_path is not None and "HF_ColBERT" in (read_json(config_path).get("architectures") or [])
    if not stanford and modules_path is None:
        return None
    from huggingface_hub import snapshot_download

    directory = Path(snapshot_download(repo_id, allow_patterns=[*METADATA_PATTERNS, "*.safetensors"], **options))
    if not any(directory.rglob("*.safetensors")):
        directory = Path(snapshot_download(repo_id, allow_patterns=[*METADATA_PATTERNS, "*.bin"], **options))
    return directory
