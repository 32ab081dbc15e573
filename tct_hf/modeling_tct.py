"""The TCT-ColBERT student: one BERT shared by queries and passages, mean pooling, dot-product similarity.

Embedding of a tokenized text with attention mask ``m`` and hidden states ``h`` (``s = config.pooling_start``)::

    e = sum_{t >= s} m_t * h_t / sum_{t >= s} m_t          (no normalization; score(q, p) = e_q . e_p)

With the default config this is exactly Pyserini's TCT-ColBERT encoder (see ``configuration_tct.py``), so the
castorini/tct_colbert-* checkpoints (plain ``BertModel`` / ``BertForPreTraining`` weights) load and give
Pyserini's vectors. ``save_pretrained`` also writes the sentence-transformers files, so a saved student loads
with ``SentenceTransformer(dir)`` (no remote code) and gives the same vectors with ``encode_query`` /
``encode_document``.

Example:
    >>> model = TCTModel.from_pretrained("castorini/tct_colbert-v2-hnp-msmarco")  # doctest: +SKIP
    >>> q = model.encode_queries(["what is the boiling point of water"])  # (1, 768) float32
    >>> p = model.encode_passages(["Water boils at 100 C."], titles=["Water"])
    >>> scores = q @ p.T

This file imports torch, numpy (the encoders return arrays), transformers, the standard library and its travelling
neighbours ``configuration_tct.py``, ``loading_checks.py``, ``text_inputs.py`` and ``bert_unpadded.py`` (it travels
with checkpoints).
"""

from __future__ import annotations

import collections
import concurrent.futures
import importlib.metadata
import itertools
import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import BertModel, BertPreTrainedModel, PreTrainedTokenizerBase
from transformers.modeling_outputs import ModelOutput
from transformers.tokenization_utils_base import BatchEncoding
from transformers.utils import logging

from .bert_unpadded import UnpaddedBatch, unpad, unpadded_last_hidden_state
from .configuration_tct import TCTConfig
from .loading_checks import (
    check_architecture,
    check_no_fresh_weights,
    load_tokenizer,
    read_config_values,
    unsafe_pickle_error,
)

logger = logging.get_logger(__name__)

# safetensors first: transformers prefers them when both exist; a .bin is read by torch's weights_only unpickler.
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass
class TCTOutput(ModelOutput):
    """Output of `TCTModel.forward`.

    Args:
        embeddings (`torch.FloatTensor` of shape `(batch_size, hidden_size)`): pooled text embeddings.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`): BERT output.
    """

    embeddings: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None


class TCTModel(BertPreTrainedModel):
    """BERT bi-encoder with TCT-ColBERT's input conventions (Pyserini's encoders by default).

    The backbone lives in ``self.bert`` (a full ``BertModel``, pooler included but frozen and unused, so that
    saved students are complete ``BertModel`` checkpoints and DDP sees no unused trainable parameter).
    ``model.tokenizer`` is attached by ``from_pretrained`` when the checkpoint ships one; assign it yourself
    otherwise (``model.tokenizer = AutoTokenizer.from_pretrained(...)``).

    Example:
        >>> config = TCTConfig(vocab_size=219, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
        >>> model = TCTModel(config)
        >>> model.tokenizer = tokenizer  # doctest: +SKIP
        >>> model.encode_queries(["heat of water"]).shape  # doctest: +SKIP
        (1, 32)
    """

    config_class = TCTConfig
    config: TCTConfig
    # castorini/tct_colbert-msmarco ships BERT's pre-training heads: they are not part of the student.
    _keys_to_ignore_on_load_unexpected = [r"^cls\.", r"(^|\.)cls\."]

    def __init__(self, config: TCTConfig):
        if not isinstance(config, TCTConfig):
            # A plain BertConfig (e.g. a Pyserini checkpoint read by AutoConfig): keep its fields, add our defaults.
            config = TCTConfig.from_dict(config.to_dict())
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=True)
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.post_init()
        self.bert.pooler.requires_grad_(False)

    # ------------------------------------------------------------------ loading and saving

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args,
        tokenizer: PreTrainedTokenizerBase | None = None,
        **kwargs,
    ) -> TCTModel:
        """Load a student from our checkpoints or from plain ``BertModel`` / ``BertForPreTraining`` ones.

        Weights: ``model.safetensors`` when present, else ``pytorch_model.bin`` through torch's ``weights_only``
        unpickler (a pickle referencing anything but tensors and containers raises OSError naming the file; nothing
        in it runs). float32 unless ``dtype=`` says otherwise. A checkpoint of another architecture than BERT, or
        one that leaves a backbone weight (other than the unused pooler) freshly initialised, raises OSError. The
        tokenizer of the directory (or Hub repository) is attached as ``model.tokenizer`` unless ``tokenizer`` is
        given.
        """
        _check_checkpoint_directory(pretrained_model_name_or_path)
        where = str(pretrained_model_name_or_path)
        if "config" not in kwargs:
            check_architecture(read_config_values(where, kwargs), where, "TCTModel", accepted=("bert",))
        kwargs.setdefault("dtype", torch.float32)
        output_loading_info = kwargs.pop("output_loading_info", False)
        try:
            model, loading_info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
        except pickle.UnpicklingError as error:
            raise unsafe_pickle_error(where, error) from error
        # The pooler is not part of the embeddings (frozen, unused): a checkpoint without it (BertForMaskedLM) loads.
        check_no_fresh_weights(loading_info, where, "TCTModel", allowed_prefixes=("bert.pooler.",))
        model.bert.pooler.requires_grad_(False)
        model.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(pretrained_model_name_or_path, kwargs)
        return (model, loading_info) if output_loading_info else model

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """Save weights (safetensors), config with ``auto_map``, the code, the tokenizer and the
        sentence-transformers files (``modules.json``, ``sentence_bert_config.json``,
        ``config_sentence_transformers.json``, ``1_Pooling/config.json``)."""
        if kwargs.get("safe_serialization") is False:
            raise ValueError("TCTModel saves safetensors only: drop safe_serialization=False.")
        super().save_pretrained(save_directory, *args, **kwargs)
        if not kwargs.get("is_main_process", True):
            return
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(save_directory))
        write_sentence_transformers_files(self.config, save_directory, tokenizer=self.tokenizer)

    # ------------------------------------------------------------------ tokenization

    @property
    def _max_positions(self) -> int | None:
        return getattr(self.config, "max_position_embeddings", None)

    def _require_tokenizer(self) -> PreTrainedTokenizerBase:
        if self.tokenizer is None:
            raise ValueError(
                "TCTModel has no tokenizer: load the model with from_pretrained(dir) from a directory that has "
                "tokenizer files, or set model.tokenizer = AutoTokenizer.from_pretrained(...)."
            )
        return self.tokenizer

    def tokenize_queries(self, texts: list[str], max_length: int | None = None) -> BatchEncoding:
        """Tokenize ``prefix + query + [MASK] * L`` truncated to ``L = max_length or config.query_max_length``
        tokens (prefix included), without added special tokens. Returns tensors."""
        length = _check_length(
            max_length, self.config.query_max_length, self.config.pooling_start, "max_length", self._max_positions
        )
        return self._tokenize(self.config.format_queries(texts, augment_length=length), length)

    def tokenize_passages(
        self, texts: list[str], titles: list[str] | None = None, max_length: int | None = None
    ) -> BatchEncoding:
        """Tokenize ``prefix + [title + " "] + text`` truncated to ``max_length or config.passage_max_length``
        tokens (prefix included), padded to the longest, without added special tokens. Returns tensors."""
        length = _check_length(
            max_length, self.config.passage_max_length, self.config.pooling_start, "max_length", self._max_positions
        )
        return self._tokenize(self.config.format_passages(texts, titles), length)

    def _tokenize(self, formatted: list[str], length: int) -> BatchEncoding:
        return self._require_tokenizer()(
            formatted,
            max_length=length,
            truncation=True,
            padding="longest",
            add_special_tokens=False,
            return_tensors="pt",
        )

    # ------------------------------------------------------------------ forward

    def pool(self, last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Masked mean of ``last_hidden_state[:, pooling_start:]`` (fp32 sums), L2-normalized if ``config.normalize``.

        Raises ValueError for a row with no token left to pool (it would otherwise be NaN or a zero vector). The
        check reads the mask back to the host (a synchronisation on a GPU); the batched ``encode_*`` helpers check
        the host-side mask before the copy to the device instead, and pool without it.
        """
        _check_poolable_rows(attention_mask, self.config.pooling_start)
        return self._mean_pool(last_hidden_state, attention_mask)

    def _last_hidden_state(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None
    ) -> torch.Tensor:
        return self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state

    def _mean_pool(
        self, last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, output_dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """`pool` without the empty-row check: no value is read back to the host. The result has the hidden
        states' dtype unless ``output_dtype`` is given (encoding keeps the float32 mean of bf16 weights)."""
        start = self.config.pooling_start
        hidden = last_hidden_state[:, start:]
        mask = attention_mask[:, start:].to(torch.float32).unsqueeze(-1)
        embeddings = (hidden.to(torch.float32) * mask).sum(dim=1) / mask.sum(dim=1)
        if self.config.normalize:
            embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
        return embeddings.to(output_dtype or last_hidden_state.dtype)

    def embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Embeddings ``[B, H]`` of already tokenized texts (queries or passages alike)."""
        return self.forward(input_ids, attention_mask, token_type_ids).embeddings

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> TCTOutput | tuple[torch.Tensor, torch.Tensor]:
        """Run BERT and pool: returns ``TCTOutput(embeddings[B, H], last_hidden_state[B, L, H])``."""
        if attention_mask is None:
            raise ValueError("TCTModel.forward needs attention_mask (padding must be excluded from the mean).")
        last_hidden_state = self._last_hidden_state(input_ids, attention_mask, token_type_ids)
        embeddings = self.pool(last_hidden_state, attention_mask)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return embeddings, last_hidden_state
        return TCTOutput(embeddings=embeddings, last_hidden_state=last_hidden_state)

    # ------------------------------------------------------------------ inference helpers

    def encode_queries(
        self,
        texts: list[str],
        batch_size: int = 64,
        max_length: int | None = None,
        autocast_dtype: torch.dtype | str | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embed queries: float32 array ``[len(texts), hidden_size]`` in input order. ``autocast_dtype`` (bf16, or
        fp16 on a GPU) runs the forward under autocast; the weights keep their dtype."""
        length = _check_length(
            max_length, self.config.query_max_length, self.config.pooling_start, "max_length", self._max_positions
        )
        return self._encode(
            self.config.format_queries(texts, augment_length=length),
            length,
            batch_size,
            autocast_dtype,
            show_progress_bar,
            "queries",
        )

    def encode_passages(
        self,
        texts: list[str],
        titles: list[str] | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
        autocast_dtype: torch.dtype | str | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embed passages (with optional titles): float32 array ``[len(texts), hidden_size]`` in input order.
        ``autocast_dtype`` as in `encode_queries`."""
        length = _check_length(
            max_length, self.config.passage_max_length, self.config.pooling_start, "max_length", self._max_positions
        )
        formatted = self.config.format_passages(texts, titles)
        return self._encode(formatted, length, batch_size, autocast_dtype, show_progress_bar, "passages")

    def _encode(
        self, texts: list[str], length: int, batch_size: int, autocast_dtype, show_progress_bar: bool, what: str
    ) -> np.ndarray:
        """Embed formatted texts in batches of similar length (longest first), then restore the input order.

        A worker thread tokenizes and packs the next batches (real tokens only, `bert_unpadded`; page-locked on
        CUDA) while the model runs the current one, and nothing in the loop reads a device value back: the
        accelerator is not left waiting on the host between batches."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        if not texts:
            return np.zeros((0, self.config.hidden_size), dtype=np.float32)
        device = self.device
        pinned = device.type == "cuda"
        autocast = _autocast_context(autocast_dtype, device)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        batches = [order[start : start + batch_size] for start in range(0, len(texts), batch_size)]
        output = np.empty((len(texts), self.config.hidden_size), dtype=np.float32)

        def prepare(indices: list[int]) -> tuple[list[int], UnpaddedBatch, torch.Tensor]:
            batch = self._tokenize([texts[i] for i in indices], length)
            _check_poolable_rows(batch["attention_mask"], self.config.pooling_start, indices, what)
            packed = unpad(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            mask = batch["attention_mask"]
            if pinned:
                packed, mask = packed.pin_memory(), mask.pin_memory()
            return indices, packed, mask

        was_training = self.training
        self.eval()
        worker = _prefetched(prepare, batches, _PREFETCH_BATCHES)
        try:
            prepared = worker
            if show_progress_bar:
                prepared = logging.tqdm(prepared, total=len(batches), desc=f"Encoding {what}", unit="batch")
            pending: list[tuple[list[int], torch.Tensor]] = []
            with torch.inference_mode(), autocast:
                for number, (indices, packed, mask) in enumerate(prepared, start=1):
                    packed, mask = packed.to(device, non_blocking=pinned), mask.to(device, non_blocking=pinned)
                    hidden = unpadded_last_hidden_state(self.bert, packed)
                    pending.append((indices, self._mean_pool(hidden, mask, output_dtype=torch.float32)))
                    # Results are copied to the host every few batches, not after each (a copy synchronises).
                    if len(pending) == _HOST_COPY_EVERY or number == len(batches):
                        for done_indices, done in pending:
                            output[done_indices] = done.cpu().numpy()
                        pending.clear()
        finally:
            worker.close()  # stops the worker thread now if the loop ended early
            self.train(was_training)
        return output


# ---------------------------------------------------------------------- helpers

_HOST_COPY_EVERY = 16  # batches kept on the device before one synchronising copy to the host
_PREFETCH_BATCHES = 4  # batches tokenized ahead by the worker thread


def _prefetched(function, items: list, depth: int):
    """``function(item)`` for each item in order, computed up to ``depth`` items ahead in one worker thread (the
    tokenizer releases the GIL). An exception in the worker is raised here, at its item."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tct_hf-tokenize") as pool:
        upcoming = iter(items)
        queued = collections.deque(pool.submit(function, item) for item in itertools.islice(upcoming, depth))
        try:
            while queued:
                result = queued.popleft().result()
                following = next(upcoming, _END)
                if following is not _END:
                    queued.append(pool.submit(function, following))
                yield result
        finally:
            for future in queued:
                future.cancel()


_END = object()


def _check_poolable_rows(
    attention_mask: torch.Tensor, pooling_start: int, positions: list[int] | None = None, what: str = "rows"
) -> None:
    """Raise ValueError when a row attends to no token after the first ``pooling_start`` (prefix) positions.

    ``positions`` maps the batch's rows to the caller's input positions, which the message then names."""
    empty = attention_mask[:, pooling_start:].sum(dim=1) == 0
    if bool(empty.any()):
        rows = torch.nonzero(empty).flatten().tolist()
        named = rows if positions is None else [positions[row] for row in rows]
        raise ValueError(
            f"{what} at positions {sorted(named)} have no token after the first {pooling_start} (prefix) positions: "
            "the text is empty after tokenization. Remove such texts or give them real content."
        )


def _check_length(
    value: int | None, default: int, pooling_start: int, name: str, max_positions: int | None = None
) -> int:
    """The token length to use. The config's default is capped at the model's position embeddings (a 512-token
    passage default on a 256-position BERT); an explicit length beyond them is an error here rather than an index
    error deep in the embeddings."""
    length = default if value is None else value
    if not isinstance(length, int) or isinstance(length, bool) or length <= pooling_start:
        raise ValueError(f"{name} must be an int larger than pooling_start={pooling_start}, got {length!r}.")
    if max_positions is not None and length > max_positions:
        if value is None:
            return max_positions
        raise ValueError(
            f"{name}={length} tokens, but the model has only {max_positions} position embeddings "
            f"(max_position_embeddings). Fix: ask for at most {max_positions} tokens, or segment long documents."
        )
    return length


def _autocast_context(dtype: torch.dtype | str | None, device: torch.device):
    """No-op for None/float32; fp16 or bf16 autocast on CUDA; bf16 autocast on CPU; fp16 on CPU is refused."""
    names = {"fp16": torch.float16, "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if isinstance(dtype, str):
        if dtype not in names and dtype not in ("fp32", "float32"):
            raise ValueError(f"autocast_dtype must be one of fp32, fp16, bf16 (or a torch dtype), got {dtype!r}.")
        dtype = names.get(dtype, torch.float32)
    if dtype is None or dtype == torch.float32:
        return torch.autocast(device_type=device.type, enabled=False)
    if dtype not in (torch.float16, torch.bfloat16):
        raise ValueError(f"autocast_dtype must be torch.float16 or torch.bfloat16, got {dtype!r}.")
    if device.type == "cpu" and dtype == torch.float16:
        raise ValueError("fp16 autocast needs a GPU: use autocast_dtype=torch.bfloat16 (or None) on CPU.")
    return torch.autocast(device_type=device.type, dtype=dtype)


def _check_checkpoint_directory(path: str | os.PathLike) -> None:
    """For a local directory, raise OSError unless it holds config.json and safetensors weights."""
    directory = Path(path)
    if not directory.exists():
        text = str(path)
        if text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text:
            raise OSError(f"{path} does not exist: give a checkpoint directory or a Hub repository id.")
        return  # a Hub repository id ("owner/name"): transformers resolves it
    if not directory.is_dir():
        raise OSError(f"{path} is a file, not a checkpoint directory.")
    if not (directory / "config.json").is_file():
        raise OSError(f"{path} is not a checkpoint directory: it has no config.json.")
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        raise OSError(f"{path} is not a checkpoint directory: it has no model.safetensors (nor pytorch_model.bin).")


def _atomic_write_json(path: Path, content: dict | list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2)
        handle.write("\n")
    os.replace(handle.name, path)


def _installed_versions() -> dict[str, str]:
    versions = {}
    for label, distribution in (
        ("sentence_transformers", "sentence-transformers"),
        ("transformers", "transformers"),
        ("pytorch", "torch"),
    ):
        try:
            versions[label] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue  # not installed: the key is optional in config_sentence_transformers.json
    return versions


def write_sentence_transformers_files(
    config: TCTConfig, directory: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | None = None
) -> None:
    """Write the sentence-transformers 6 files that express the student with stock modules only.

    ``Transformer(processing_kwargs={"text": {"add_special_tokens": False}}, query_expansion={"strategy": "fixed",
    "attend": True, "token": <augment token>, "length": query_max_length}, document_length=passage_max_length)``,
    ``Pooling(hidden_size, "mean", include_prompt=False)`` (drops the prompt's tokens = ``pooling_start``),
    ``[Normalize()]`` when ``config.normalize``, prompts ``{"query": query_prefix, "document": passage_prefix}``,
    ``similarity_fn_name = "dot"`` (``"cosine"`` when normalized).
    """
    if tokenizer is not None:
        for name in ("query_prefix", "passage_prefix"):
            prefix = getattr(config, name)
            n_tokens = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
            if n_tokens != config.pooling_start:
                raise ValueError(
                    f"config.{name}={prefix!r} has {n_tokens} tokens but pooling_start={config.pooling_start}: "
                    "sentence-transformers drops exactly the prompt's tokens, so its vectors would differ. "
                    "Set pooling_start to the prefix's token count."
                )
    directory = Path(directory)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
        },
    ]
    if config.normalize:
        modules.append(
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.base.modules.normalize.Normalize",
            }
        )
    transformer_config = {
        "transformer_task": "feature-extraction",
        "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        "module_output_name": "token_embeddings",
        "processing_kwargs": {"text": {"add_special_tokens": False}},
        "document_length": config.passage_max_length,
        "query_expansion": {
            "strategy": "fixed",
            "attend": True,
            "token": config.query_augment_token,
            "length": config.query_max_length,
        },
    }
    model_config = {
        "__version__": _installed_versions(),
        "model_type": "SentenceTransformer",
        "prompts": {"query": config.query_prefix, "document": config.passage_prefix},
        "default_prompt_name": None,
        "similarity_fn_name": "cosine" if config.normalize else "dot",
    }
    pooling_config = {"embedding_dimension": config.hidden_size, "pooling_mode": "mean", "include_prompt": False}
    _atomic_write_json(directory / "sentence_bert_config.json", transformer_config)
    _atomic_write_json(directory / "config_sentence_transformers.json", model_config)
    _atomic_write_json(directory / "1_Pooling" / "config.json", pooling_config)
    if config.normalize:
        _atomic_write_json(directory / "2_Normalize" / "config.json", {})
    _atomic_write_json(directory / "modules.json", modules)
