"""Load any dense encoder the retrieval tools accept, behind one small interface.

Three kinds of model directories are accepted:

- a tct_hf student (saved by `TCTModel.save_pretrained`), loaded as `TCTModel`;
- a plain BERT checkpoint (e.g. castorini/tct_colbert-v2-hnp-msmarco), loaded as `TCTModel`, i.e. encoded with the
  TCT-ColBERT conventions of `TCTConfig`'s defaults (Pyserini's prefixes, lengths and pooling);
- any sentence-transformers model directory (e.g. all-MiniLM-L6-v2), loaded with `SentenceTransformer(dir)` and
  encoded with its own `encode_query` / `encode_document` (prompts, pooling and normalization as saved), for
  baselines.

Detection rule (`detect_encoder_type`), applied to a local directory:

1. no `config.json` and no `modules.json` → `OSError` (not a model checkpoint);
2. `config.json` describes a tct_hf student (its `auto_map` names `TCTModel`, or it carries the TCT fields
   `pooling_start` and `query_prefix`) → ``"tct"`` (a student also ships `modules.json`, but its own class is exact);
3. `modules.json` present → ``"sentence-transformers"``;
4. otherwise (a plain `config.json`) → ``"tct"``.

A name that is not a local directory is handed to `TCTModel.from_pretrained` (a Hub id; offline it must be cached).
`encoder_type=` (the CLI's `--encoder-type`) overrides the rule.

Example::

    encoder = load_encoder("castorini/tct_colbert-v2-hnp-msmarco")
    q = encoder.encode_queries(["what is dense retrieval"], batch_size=32)        # float32 [1, 768]
    p = encoder.encode_passages(["Dense retrieval ..."], titles=None, batch_size=32)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch

EncoderType = Literal["auto", "tct", "sentence-transformers"]
ENCODER_TYPES: tuple[str, ...] = ("auto", "tct", "sentence-transformers")
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@runtime_checkable
class Encoder(Protocol):
    """What `encode_corpus`, `mine_hard_negatives` and the CLI need from a model (a `TCTModel` is one)."""

    def encode_queries(self, texts: list[str], batch_size: int = 64, **kwargs: Any) -> np.ndarray: ...

    def encode_passages(
        self, texts: list[str], titles: list[str] | None = None, batch_size: int = 64, **kwargs: Any
    ) -> np.ndarray: ...


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise OSError(f"{path}: not valid JSON ({error}); is this a model checkpoint?") from error


def is_tct_student_config(config: dict[str, Any]) -> bool:
    """True when a `config.json` dict was written by a tct_hf student (`TCTConfig`)."""
    auto_map = config.get("auto_map") or {}
    names_student = any("TCTModel" in str(target) for target in auto_map.values())
    return names_student or ("pooling_start" in config and "query_prefix" in config)


def detect_encoder_type(path: str | Path) -> Literal["tct", "sentence-transformers"]:
    """Apply the module docstring's rule to a local directory; raise `OSError` when it is not a checkpoint."""
    directory = Path(path)
    if not directory.is_dir():
        raise OSError(f"{directory}: not a directory")
    config_file, modules_file = directory / "config.json", directory / "modules.json"
    if not config_file.is_file() and not modules_file.is_file():
        raise OSError(
            f"{directory}: not a model checkpoint (no config.json or modules.json); "
            "pass a tct_hf student, a BERT checkpoint or a sentence-transformers model directory"
        )
    if config_file.is_file() and is_tct_student_config(_read_json(config_file)):
        return "tct"
    if modules_file.is_file():
        return "sentence-transformers"
    return "tct"


def _default_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


class SentenceTransformerEncoder:
    """Adapter giving a `SentenceTransformer` the `Encoder` interface.

    Queries go through `encode_query` and passages through `encode_document`, so the model's saved prompts,
    pooling and normalization apply. A title is joined to its passage as ``f"{title} {text}"`` (an empty title
    adds nothing). `max_length` temporarily overrides the model's `max_seq_length`.
    """

    def __init__(self, model: Any) -> None:
        self.model = model

    @property
    def embedding_dim(self) -> int | None:
        return self.model.get_embedding_dimension()

    def _encode(
        self, method: Any, texts: list[str], batch_size: int, max_length: int | None, show: bool
    ) -> np.ndarray:
        previous = self.model.max_seq_length
        if max_length is not None:
            self.model.max_seq_length = max_length
        try:
            embeddings = method(list(texts), batch_size=batch_size, show_progress_bar=show, convert_to_numpy=True)
        finally:
            if max_length is not None:
                self.model.max_seq_length = previous
        return np.asarray(embeddings, dtype=np.float32).reshape(len(texts), -1)

    def encode_queries(
        self,
        texts: list[str],
        batch_size: int = 64,
        max_length: int | None = None,
        show_progress_bar: bool = False,
        **kwargs: Any,
    ) -> np.ndarray:
        return self._encode(self.model.encode_query, texts, batch_size, max_length, show_progress_bar)

    def encode_passages(
        self,
        texts: list[str],
        titles: list[str] | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
        show_progress_bar: bool = False,
        **kwargs: Any,
    ) -> np.ndarray:
        if titles is not None:
            if len(titles) != len(texts):
                raise ValueError(f"got {len(titles)} titles for {len(texts)} passages")
            texts = [f"{title} {text}" if title else text for title, text in zip(titles, texts)]
        return self._encode(self.model.encode_document, texts, batch_size, max_length, show_progress_bar)


def load_encoder(
    name_or_path: str | Path,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    encoder_type: EncoderType = "auto",
) -> Any:
    """Load `name_or_path` as an `Encoder` (a `TCTModel` or a `SentenceTransformerEncoder`), in eval mode.

    Args:
        name_or_path: a local model directory (see the module docstring for the rule) or a Hub id.
        device: defaults to CUDA when available, else CPU.
        dtype: ``"float32" | "float16" | "bfloat16"`` (or a `torch.dtype`): the weights' dtype; outputs are
            float32 either way. Default: the checkpoint's dtype.
        encoder_type: ``"auto"`` (the rule), ``"tct"`` or ``"sentence-transformers"``.
    """
    if encoder_type not in ENCODER_TYPES:
        raise ValueError(f"encoder_type {encoder_type!r} is not one of {', '.join(ENCODER_TYPES)}")
    torch_device, torch_dtype = _default_device(device), _resolve_dtype(dtype)
    path = Path(name_or_path)
    is_local = path.is_dir()
    looks_like_path = str(name_or_path).startswith((".", "/", "~")) or str(name_or_path).count("/") > 1
    if not is_local and (path.exists() or looks_like_path):
        raise OSError(f"{name_or_path}: no such model directory (give a checkpoint folder or a Hub id)")
    if encoder_type == "auto":
        encoder_type = detect_encoder_type(path) if is_local else "tct"
    elif is_local:
        detect_encoder_type(path)  # still refuse a directory that is no checkpoint at all

    if encoder_type == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model_kwargs = {"dtype": torch_dtype} if torch_dtype is not None else None
        model = SentenceTransformer(str(name_or_path), device=str(torch_device), model_kwargs=model_kwargs)
        model.eval()
        return SentenceTransformerEncoder(model)

    from tct_hf.modeling_tct import TCTModel

    kwargs = {"dtype": torch_dtype} if torch_dtype is not None else {}
    model = TCTModel.from_pretrained(str(name_or_path), **kwargs)
    if getattr(model, "tokenizer", None) is None:
        raise OSError(f"{name_or_path}: no tokenizer files found next to the model (vocab.txt / tokenizer.json)")
    model.to(torch_device)
    model.eval()
    return model


def embedding_dim(encoder: Any) -> int | None:
    """The output dimension of an encoder, when it can be known without encoding."""
    if hasattr(encoder, "embedding_dim"):
        return encoder.embedding_dim
    config = getattr(encoder, "config", None)
    return getattr(config, "hidden_size", None)
