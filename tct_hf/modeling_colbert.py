"""The ColBERT teacher: BERT + ``Linear(hidden_size, dim)`` per token, late interaction (MaxSim).

    score(q, d) = sum_{i : q_mask[i]} max_{j : d_mask[j]} E_q[i] . E_d[j]        (fp32 accumulation)

Query tokens: every position from ``skip_positions`` on ([MASK] augmentation included). Passage tokens: attended
positions from ``skip_positions`` on, minus ``skiplist_words`` (Stanford: punctuation). Conventions: see
``configuration_colbert.py``.

``ColBERTModel.from_pretrained`` loads our checkpoints and starts a new teacher on a plain BERT. Foreign layouts
(Stanford ColBERT, sentence-transformers multi-vector, PyLate) are converted by readers registered with
`ColBERTModel.register_checkpoint_reader`: ``import tct_hf`` registers ``tct_hf.conversion``'s, so with the package
installed ``from_pretrained`` loads those too; this file alone (remote code) refuses a Stanford directory clearly.

Example:
    >>> teacher = ColBERTModel.from_pretrained("colbert-ir/colbertv2.0")  # doctest: +SKIP
    >>> teacher.score_matrix(["what is heat"], ["Heat is energy.", "Paris is in France."])  # (1, 2) float32
    >>> teacher.score(["what is heat"], ["Heat is energy."])  # (1,) float32

This file imports torch, numpy (the inference helpers return arrays), transformers, the standard library and its
travelling neighbours ``configuration_colbert.py``, ``loading_checks.py``, ``text_inputs.py`` and
``bert_unpadded.py`` (it travels with checkpoints).
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AddedToken,
    BertConfig,
    BertModel,
    BertPreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.modeling_outputs import ModelOutput
from transformers.tokenization_utils_base import BatchEncoding
from transformers.utils import logging

from .bert_unpadded import repad, unpad, unpadded_last_hidden_state
from .configuration_colbert import ColBERTConfig
from .loading_checks import (
    HUB_KWARGS,
    check_architecture,
    check_no_fresh_weights,
    hub_kwargs,
    load_tokenizer,
    read_config_values,
    unsafe_pickle_error,
)
from .text_inputs import check_texts, check_titles

logger = logging.get_logger(__name__)

# Element budget of one (queries, passages, query tokens, passage tokens) similarity block in `maxsim`.
MAXSIM_CHUNK_ELEMENTS = 2**26


@dataclass
class ColBERTOutput(ModelOutput):
    """Output of `ColBERTModel.forward`.

    Args:
        scores (`torch.FloatTensor` of shape `(num_queries, num_passages)`): MaxSim scores (float32).
        query_embeddings (`torch.FloatTensor` of shape `(num_queries, query_length, dim)`)
        query_mask (`torch.BoolTensor` of shape `(num_queries, query_length)`): True on scored query tokens.
        passage_embeddings (`torch.FloatTensor` of shape `(num_passages, passage_length, dim)`)
        passage_mask (`torch.BoolTensor` of shape `(num_passages, passage_length)`): True on scored passage tokens.
    """

    scores: torch.FloatTensor | None = None
    query_embeddings: torch.FloatTensor | None = None
    query_mask: torch.BoolTensor | None = None
    passage_embeddings: torch.FloatTensor | None = None
    passage_mask: torch.BoolTensor | None = None


def maxsim(
    query_embeddings: torch.Tensor,
    query_mask: torch.Tensor,
    passage_embeddings: torch.Tensor,
    passage_mask: torch.Tensor,
    chunk_elements: int = MAXSIM_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """All-pairs MaxSim ``[B, N]``: ``sum_i q_mask[b,i] * max_{j: d_mask[n,j]} q[b,i] . d[n,j]`` in float32.

    One similarity block ``[b, n, Lq, Ld]`` (``b`` queries against ``n`` passages) holds at most
    ``chunk_elements`` values (a loop over blocks, never over pairs): all queries against as many passages as fit
    when the queries are few (at most ``isqrt(chunk_elements // (Lq * Ld))``) or all pairs fit at once, else about
    square blocks of queries and passages. The blocking changes no score. Every passage must have at least one
    scored token.

    Example:
        >>> q, d = torch.randn(2, 3, 4), torch.randn(5, 6, 4)
        >>> maxsim(q, torch.ones(2, 3, dtype=torch.bool), d, torch.ones(5, 6, dtype=torch.bool)).shape
        torch.Size([2, 5])
    """
    _check_maxsim_inputs(query_embeddings, query_mask, passage_embeddings, passage_mask)
    queries = query_embeddings.float()
    passages = passage_embeddings.float()
    batch, query_length, dim = queries.shape
    count, passage_length, _ = passages.shape
    if batch == 0 or count == 0:
        return queries.new_zeros(batch, count)
    # Unscored passage tokens are kept out of the max by one extra coordinate, not by a masked_fill pass over the
    # whole similarity block: their vectors are zeroed (whatever they held, NaN included), queries get 1 in the
    # extra coordinate, scored passage tokens 0 (their similarity is unchanged) and unscored ones -bound, with
    # bound > every |q . d|: an unscored token scores below every scored one and never wins the max.
    scored = passage_mask.bool()
    passages = torch.where(scored[..., None], passages, 0.0)
    bound = (queries.norm(dim=-1).amax() * passages.norm(dim=-1).amax()).detach() + 1.0
    flat_queries = torch.cat([queries, queries.new_ones(batch, query_length, 1)], dim=-1)
    flat_queries = flat_queries.reshape(batch * query_length, dim + 1)
    offsets = (~scored).to(torch.float32).unsqueeze(-1) * -bound
    extended = torch.cat([passages, offsets], dim=-1)  # [N, Ld, dim + 1]
    query_weights = query_mask.to(torch.float32)[:, :, None]
    rows, step = _maxsim_block(batch, count, query_length * passage_length, chunk_elements)
    row_blocks = []
    for first in range(0, batch, rows):
        block_queries = flat_queries[first * query_length : (first + rows) * query_length]
        block_weights = query_weights[first : first + rows]
        size_q = block_weights.shape[0]
        blocks = []
        for start in range(0, count, step):
            chunk = extended[start : start + step]
            size = chunk.shape[0]
            similarity = block_queries @ chunk.reshape(size * passage_length, dim + 1).T  # [b * Lq, n * Ld], one GEMM
            best = similarity.view(size_q * query_length, size, passage_length).amax(dim=-1)
            blocks.append((best.view(size_q, query_length, size) * block_weights).sum(dim=1))
        row_blocks.append(torch.cat(blocks, dim=1))
    return torch.cat(row_blocks, dim=0)


def _maxsim_block(batch: int, count: int, pair_elements: int, chunk_elements: int) -> tuple[int, int]:
    """(queries, passages) of one MaxSim block: at most ``chunk_elements // pair_elements`` pairs (at least one).
    All queries when they are few (at most the square root of the pairs) or everything fits, else about square.

    >>> _maxsim_block(4, 100, 10, 200), _maxsim_block(100, 100, 10, 1000), _maxsim_block(100, 5, 10, 1000)
    ((4, 5), (10, 10), (20, 5))
    """
    pairs = max(1, chunk_elements // max(1, pair_elements))
    rows = min(batch, max(math.isqrt(pairs), pairs // max(1, count)))
    return rows, max(1, pairs // rows)


def maxsim_pairwise(
    query_embeddings: torch.Tensor,
    query_mask: torch.Tensor,
    passage_embeddings: torch.Tensor,
    passage_mask: torch.Tensor,
) -> torch.Tensor:
    """MaxSim of matched pairs ``[B]``: query ``b`` against passage ``b`` (float32)."""
    _check_maxsim_inputs(query_embeddings, query_mask, passage_embeddings, passage_mask)
    if query_embeddings.shape[0] != passage_embeddings.shape[0]:
        raise ValueError(
            f"maxsim_pairwise needs as many passages as queries, got {passage_embeddings.shape[0]} "
            f"and {query_embeddings.shape[0]}."
        )
    similarity = torch.einsum("bih,bjh->bij", query_embeddings.float(), passage_embeddings.float())
    similarity = similarity.masked_fill(~passage_mask.bool()[:, None, :], float("-inf"))
    best = similarity.max(dim=-1).values
    return (best * query_mask.to(torch.float32)).sum(dim=-1)


def _check_maxsim_inputs(queries, query_mask, passages, passage_mask) -> None:
    if queries.dim() != 3 or passages.dim() != 3 or queries.shape[-1] != passages.shape[-1]:
        raise ValueError(
            f"maxsim needs queries [B, Lq, dim] and passages [N, Ld, dim] of the same dim, got "
            f"{tuple(queries.shape)} and {tuple(passages.shape)}."
        )
    if tuple(query_mask.shape) != tuple(queries.shape[:2]) or tuple(passage_mask.shape) != tuple(passages.shape[:2]):
        raise ValueError(
            f"masks must match the embeddings' first two dims: got query_mask {tuple(query_mask.shape)} for "
            f"{tuple(queries.shape)}, passage_mask {tuple(passage_mask.shape)} for {tuple(passages.shape)}."
        )
    empty = ~passage_mask.bool().any(dim=-1)
    if bool(empty.any()):
        raise ValueError(
            f"passages {torch.nonzero(empty).flatten().tolist()} have no scored token (empty after the markers and "
            "the skiplist): their MaxSim would be -inf. Remove them or give them real content."
        )


class ColBERTModel(BertPreTrainedModel):
    """ColBERT late-interaction scorer (the teacher of TCT-ColBERT), a ``PreTrainedModel``.

    ``self.bert`` (no pooler) and ``self.linear`` carry Stanford ColBERT's key names. ``model.tokenizer`` is attached
    by ``from_pretrained``; assigning it registers the query/passage markers (e.g. ``[unused0]``) as single tokens.

    Example:
        >>> config = ColBERTConfig(convention="stanford", vocab_size=219, hidden_size=32, num_hidden_layers=2,
        ...                        num_attention_heads=2, intermediate_size=37, dim=16)
        >>> model = ColBERTModel(config)
        >>> model.tokenizer = tokenizer  # doctest: +SKIP
        >>> model.score_matrix(["heat of water"], ["water boils", "paris"]).shape  # doctest: +SKIP
        (1, 2)
    """

    config_class = ColBERTConfig
    config: ColBERTConfig
    _keys_to_ignore_on_load_unexpected = [r"pooler\.", r"(^|\.)cls\."]

    def __init__(self, config: ColBERTConfig):
        if not isinstance(config, ColBERTConfig):
            config = ColBERTConfig.from_dict(config.to_dict())
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.linear = torch.nn.Linear(config.hidden_size, config.dim, bias=config.projection_bias)
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self._skiplist_ids: torch.Tensor | None = None
        self.post_init()

    # ------------------------------------------------------------------ tokenizer

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase | None:
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer: PreTrainedTokenizerBase | None) -> None:
        self._tokenizer = tokenizer
        self._skiplist_ids = None
        if tokenizer is None:
            return
        if self.config.register_marker_tokens:
            _register_marker_tokens(tokenizer, [self.config.query_prefix, self.config.passage_prefix])
        ids = []
        for word in self.config.skiplist_words:
            pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
            if len(pieces) == 1 and pieces[0] != tokenizer.unk_token_id:
                ids.append(pieces[0])
        self._skiplist_ids = torch.tensor(sorted(set(ids)), dtype=torch.long)
        if tokenizer.mask_token_id is None and self.config.query_augment_token is not None:
            raise ValueError("the tokenizer has no mask token: ColBERT's query augmentation needs one.")

    def _require_tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            raise ValueError(
                "ColBERTModel has no tokenizer: load it with from_pretrained(dir) from a directory with tokenizer "
                "files, or set model.tokenizer = AutoTokenizer.from_pretrained(...)."
            )
        return self._tokenizer

    # ------------------------------------------------------------------ loading and saving

    # Readers of foreign checkpoint layouts, tried in order: each takes the path or Hub id (and the Hub keyword
    # arguments) and returns (config values, state dict, tokenizer directory), or None when the layout is not its
    # own. They live outside this file (tct_hf.conversion registers its own on import) so that the file stays
    # self-contained when it runs as remote code.
    _checkpoint_readers: list = []

    @classmethod
    def register_checkpoint_reader(cls, reader) -> None:
        """Make ``from_pretrained`` try ``reader(path, **hub_kwargs) -> (config_values, state_dict, tokenizer_dir) |
        None`` before loading a checkpoint as ours or as a plain BERT (registered once)."""
        if reader not in ColBERTModel._checkpoint_readers:
            ColBERTModel._checkpoint_readers.append(reader)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args,
        tokenizer: PreTrainedTokenizerBase | None = None,
        **kwargs,
    ) -> ColBERTModel:
        """Load our checkpoints, start a new teacher on a plain BERT, or convert a foreign layout (Stanford
        ColBERT, sentence-transformers multi-vector, PyLate) through the registered checkpoint readers.

        Weights: safetensors when present, else ``pytorch_model.bin`` through torch's ``weights_only`` unpickler (a
        pickle referencing anything but tensors and containers raises OSError naming the file; nothing runs).
        float32 unless ``dtype=`` says otherwise. A checkpoint of another architecture than BERT, or a load that
        leaves a weight freshly initialised, raises OSError; the one exception is the new projection of a new
        teacher started on a plain BERT. For converted directories, keyword arguments that name ``ColBERTConfig``
        fields override the values read from disk.
        """
        directory = Path(pretrained_model_name_or_path)
        where = str(pretrained_model_name_or_path)
        kwargs.setdefault("dtype", torch.float32)
        if directory.exists():
            _check_local_directory(directory)
        for reader in ColBERTModel._checkpoint_readers:
            converted = reader(pretrained_model_name_or_path, **hub_kwargs(kwargs))
            if converted is not None:
                options = {key: value for key, value in kwargs.items() if key not in HUB_KWARGS}
                return cls.from_converted(*converted, tokenizer=tokenizer, **options)
        config_values = read_config_values(where, kwargs)
        if "HF_ColBERT" in (config_values.get("architectures") or []):
            raise OSError(
                f"{where} is a Stanford ColBERT checkpoint: its conversion lives in the tct_hf package "
                "(pip install tct_hf; then ColBERTModel.from_pretrained converts it on load)."
            )
        check_architecture(config_values, where, "ColBERTModel", accepted=("bert", ColBERTConfig.model_type))
        new_teacher = config_values.get("model_type") != ColBERTConfig.model_type
        if new_teacher and "config" not in kwargs:
            # A plain BERT: a new ColBERT on top of it (the projection starts random). Build the config here so that
            # `convention=` picks the defaults before they are filled in.
            fields = set(ColBERTConfig.__dataclass_fields__)
            overrides = {key: kwargs.pop(key) for key in list(kwargs) if key in fields and key != "dtype"}
            kwargs["config"] = ColBERTConfig(**{**_bert_fields(config_values), **overrides})
        output_loading_info = kwargs.pop("output_loading_info", False)
        try:
            model, loading_info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
        except pickle.UnpicklingError as error:
            raise unsafe_pickle_error(where, error) from error
        # The one documented exception: a new teacher's projection is new (random until trained).
        check_no_fresh_weights(
            loading_info, where, "ColBERTModel", allowed_prefixes=("linear.",) if new_teacher else ()
        )
        _check_projection(model.linear.weight.shape, model.config, where)
        model.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(pretrained_model_name_or_path, kwargs)
        return (model, loading_info) if output_loading_info else model

    @classmethod
    def from_converted(
        cls,
        config_values: dict,
        state_dict: dict[str, torch.Tensor],
        tokenizer_directory: str | os.PathLike,
        tokenizer: PreTrainedTokenizerBase | None = None,
        dtype: torch.dtype | str = torch.float32,
        **overrides,
    ) -> ColBERTModel:
        """Build a teacher from converted values: ``ColBERTConfig(**config_values, **overrides)``, a state dict with
        every ``bert.*`` and ``linear.*`` weight (pooler and ``cls.*`` heads ignored; anything else missing or
        unexpected raises OSError) and the tokenizer of ``tokenizer_directory`` (unless ``tokenizer`` is given)."""
        unknown = set(overrides) - set(ColBERTConfig.__dataclass_fields__)
        if unknown:
            raise TypeError(f"unexpected arguments {sorted(unknown)} for a converted checkpoint.")
        config = ColBERTConfig(**{**config_values, **overrides})
        _check_projection(state_dict["linear.weight"].shape, config, str(tokenizer_directory))
        model = cls(config)
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        unexpected = [key for key in unexpected if not key.startswith(("bert.pooler.", "cls."))]
        missing = [key for key in missing if not key.endswith("position_ids")]
        if missing or unexpected:
            raise OSError(
                f"{tokenizer_directory}: weights do not fit a BERT + linear ColBERT: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}."
            )
        if isinstance(dtype, str) and dtype != "auto":
            dtype = getattr(torch, dtype)
        if isinstance(dtype, torch.dtype):
            model = model.to(dtype)
        model.eval()
        model.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(tokenizer_directory, {})
        return model

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """Save weights (safetensors), the config with ``auto_map``, the code and the tokenizer."""
        if kwargs.get("safe_serialization") is False:
            raise ValueError("ColBERTModel saves safetensors only: drop safe_serialization=False.")
        super().save_pretrained(save_directory, *args, **kwargs)
        if self._tokenizer is not None and kwargs.get("is_main_process", True):
            self._tokenizer.save_pretrained(str(save_directory))

    # ------------------------------------------------------------------ tokenization

    def tokenize_queries(self, texts: list[str], max_length: int | None = None) -> BatchEncoding:
        """``prefix + query`` tokenized to exactly ``max_length or config.query_max_length`` tokens: truncated, or
        padded with ``query_augment_token`` (attended only when ``attend_to_mask_tokens``). Returns tensors."""
        check_texts(texts, "queries")
        length = self._check_length(max_length, self.config.query_max_length)
        tokenizer = self._require_tokenizer()
        encoded = tokenizer(
            [f"{self.config.query_prefix}{text}" for text in texts],
            max_length=length,
            truncation=True,
            padding="max_length",
            add_special_tokens=self.config.add_special_tokens,
            return_tensors="pt",
        )
        augmented = encoded["attention_mask"] == 0
        augment_id = tokenizer.convert_tokens_to_ids(self.config.query_augment_token)
        encoded["input_ids"] = encoded["input_ids"].masked_fill(augmented, augment_id)
        if self.config.attend_to_mask_tokens:
            encoded["attention_mask"] = torch.ones_like(encoded["attention_mask"])
        return encoded

    def tokenize_passages(
        self, texts: list[str], titles: list[str] | None = None, max_length: int | None = None
    ) -> BatchEncoding:
        """``prefix + [title + " "] + text`` truncated to ``max_length or config.passage_max_length`` tokens,
        padded to the longest. Returns tensors."""
        check_texts(texts, "passages")
        length = self._check_length(max_length, self.config.passage_max_length)
        if titles is not None:
            check_titles(titles, len(texts))
            texts = [f"{title} {text}" if title else text for title, text in zip(titles, texts)]
        return self._require_tokenizer()(
            [f"{self.config.passage_prefix}{text}" for text in texts],
            max_length=length,
            truncation=True,
            padding="longest",
            add_special_tokens=self.config.add_special_tokens,
            return_tensors="pt",
        )

    def _check_length(self, value: int | None, default: int) -> int:
        """As the student's: the default is capped at the position embeddings, an explicit excess is an error."""
        length = default if value is None else value
        if not isinstance(length, int) or isinstance(length, bool) or length <= self.config.skip_positions:
            raise ValueError(
                f"max_length must be an int larger than skip_positions={self.config.skip_positions}, got {length!r}."
            )
        max_positions = getattr(self.config, "max_position_embeddings", None)
        if max_positions is not None and length > max_positions:
            if value is None:
                return max_positions
            raise ValueError(
                f"max_length={length} tokens, but the model has only {max_positions} position embeddings "
                f"(max_position_embeddings). Fix: ask for at most {max_positions} tokens."
            )
        return length

    # ------------------------------------------------------------------ token embeddings and scores

    def _project(
        self, input_ids, attention_mask, token_type_ids, normalize: bool, unpadded: bool | int
    ) -> torch.Tensor:
        if unpadded:
            # Only the attended tokens go through BERT and the projection; padding positions come back as zeros.
            batch = unpad(input_ids, attention_mask, token_type_ids, attention_groups=int(unpadded))
            hidden = unpadded_last_hidden_state(self.bert, batch, packed=True)
        else:
            hidden = self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
        embeddings = self.linear(hidden)
        if normalize:
            embeddings = torch.nn.functional.normalize(embeddings, p=2, dim=-1)
        return repad(embeddings, batch) if unpadded else embeddings

    def _position_mask(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return (positions >= self.config.skip_positions)[None, :].expand_as(input_ids)

    def encode_query_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Query token vectors ``[B, Lq, dim]`` and the scoring mask ``[B, Lq]`` (True from ``skip_positions`` on,
        except padding; [MASK] augmentation tokens are scored whether attended or not, so queries always run
        padded: their [MASK]s are real positions)."""
        embeddings = self._project(input_ids, attention_mask, token_type_ids, self.config.normalize_queries, False)
        pad_id = self.config.pad_token_id
        mask = self._position_mask(input_ids) & (input_ids != pad_id if pad_id is not None else True)
        return embeddings, mask

    def encode_passage_tokens(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        unpadded: bool | int = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Passage token vectors ``[N, Ld, dim]`` and the scoring mask ``[N, Ld]`` (False on padding, on the first
        ``skip_positions`` positions and on ``skiplist_words`` tokens). ``unpadded`` (True, or an int = the number
        of length groups that attend separately) runs BERT and the projection on the real tokens only
        (`bert_unpadded`; padding positions are then zero vectors)."""
        embeddings = self._project(input_ids, attention_mask, token_type_ids, self.config.normalize_passages, unpadded)
        mask = self._position_mask(input_ids) & attention_mask.bool()
        if self.config.skiplist_words:
            if self._skiplist_ids is None:
                raise ValueError(
                    "config.skiplist_words is set but the model has no tokenizer to resolve it: set model.tokenizer."
                )
            mask = mask & ~torch.isin(input_ids, self._skiplist_ids.to(input_ids.device))
        return embeddings, mask

    def maxsim(
        self,
        query_embeddings,
        query_mask,
        passage_embeddings,
        passage_mask,
        chunk_elements: int = MAXSIM_CHUNK_ELEMENTS,
    ) -> torch.Tensor:
        """All-pairs MaxSim ``[B, N]`` in float32 (see the module function `maxsim`; ``chunk_elements`` bounds one
        similarity block)."""
        return maxsim(query_embeddings, query_mask, passage_embeddings, passage_mask, chunk_elements=chunk_elements)

    def forward(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        passage_input_ids: torch.Tensor,
        passage_attention_mask: torch.Tensor,
        query_token_type_ids: torch.Tensor | None = None,
        passage_token_type_ids: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> ColBERTOutput | tuple:
        """Score every query against every passage: ``ColBERTOutput(scores[B, N], ...)``."""
        queries, query_mask = self.encode_query_tokens(query_input_ids, query_attention_mask, query_token_type_ids)
        passages, passage_mask = self.encode_passage_tokens(
            passage_input_ids, passage_attention_mask, passage_token_type_ids
        )
        scores = maxsim(queries, query_mask, passages, passage_mask)
        output = ColBERTOutput(
            scores=scores,
            query_embeddings=queries,
            query_mask=query_mask,
            passage_embeddings=passages,
            passage_mask=passage_mask,
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    # ------------------------------------------------------------------ inference helpers

    def score_matrix(
        self, queries: list[str], passages: list[str], titles: list[str] | None = None, batch_size: int = 64
    ) -> np.ndarray:
        """MaxSim of every query against every passage: float32 array ``[len(queries), len(passages)]``."""
        check_texts(queries, "queries")
        check_texts(passages, "passages")
        _check_batch_size(batch_size)
        if titles is not None:
            check_titles(titles, len(passages))
        scores = np.zeros((len(queries), len(passages)), dtype=np.float32)
        if not queries or not passages:
            return scores
        device = self.device
        with _inference(self):
            query_blocks = []
            for start in range(0, len(queries), batch_size):
                batch = self.tokenize_queries(queries[start : start + batch_size]).to(device)
                query_blocks.append(self.encode_query_tokens(**_model_inputs(batch)))
            order = sorted(range(len(passages)), key=lambda i: len(passages[i]), reverse=True)
            for start in range(0, len(passages), batch_size):
                indices = order[start : start + batch_size]
                batch_titles = None if titles is None else [titles[i] for i in indices]
                batch = self.tokenize_passages([passages[i] for i in indices], batch_titles).to(device)
                passage_tokens, passage_mask = self.encode_passage_tokens(**_model_inputs(batch))
                column = torch.cat([maxsim(q, m, passage_tokens, passage_mask) for q, m in query_blocks], dim=0)
                scores[:, indices] = column.cpu().numpy()
        return scores

    def score(
        self, queries: list[str], passages: list[str], titles: list[str] | None = None, batch_size: int = 64
    ) -> np.ndarray:
        """MaxSim of matched pairs ``(queries[i], passages[i])``: float32 array ``[len(queries)]``."""
        check_texts(queries, "queries")
        check_texts(passages, "passages")
        _check_batch_size(batch_size)
        if len(queries) != len(passages):
            raise ValueError(
                f"score needs one passage per query: got {len(queries)} queries, {len(passages)} passages."
            )
        scores = np.zeros(len(queries), dtype=np.float32)
        device = self.device
        with _inference(self):
            for start in range(0, len(queries), batch_size):
                stop = start + batch_size
                batch_titles = None if titles is None else titles[start:stop]
                query_batch = self.tokenize_queries(queries[start:stop]).to(device)
                passage_batch = self.tokenize_passages(passages[start:stop], batch_titles).to(device)
                q, q_mask = self.encode_query_tokens(**_model_inputs(query_batch))
                d, d_mask = self.encode_passage_tokens(**_model_inputs(passage_batch))
                scores[start:stop] = maxsim_pairwise(q, q_mask, d, d_mask).cpu().numpy()
        return scores


# ---------------------------------------------------------------------- helpers


class _inference:
    """Eval mode + ``torch.inference_mode`` for the duration of a block, restoring the training flag."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.mode = torch.inference_mode()

    def __enter__(self):
        self.was_training = self.model.training
        self.model.eval()
        self.mode.__enter__()

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)
        self.model.train(self.was_training)
        return False


def _model_inputs(batch: BatchEncoding) -> dict[str, torch.Tensor]:
    return {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "token_type_ids": batch.get("token_type_ids"),
    }


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")


def _check_projection(weight_shape, config: ColBERTConfig, where: str) -> None:
    out_features, in_features = tuple(weight_shape)
    if in_features != config.hidden_size:
        raise ValueError(
            f"{where}: the projection expects hidden size {in_features} but the BERT backbone has hidden_size="
            f"{config.hidden_size}: the projection does not belong to this backbone."
        )
    if out_features != config.dim:
        raise ValueError(f"{where}: the projection has {out_features} outputs but the config says dim={config.dim}.")


def _register_marker_tokens(tokenizer: PreTrainedTokenizerBase, prefixes: list[str]) -> None:
    """Make a marker such as ``[unused0]`` one token (registered as special, not normalized), like Stanford's token
    insertion. Only markers the vocabulary knows and the tokenizer currently splits are registered."""
    vocab = tokenizer.get_vocab()
    to_register = []
    for prefix in prefixes:
        if not prefix or not prefix.split():
            continue
        marker = prefix.split()[0]
        if marker in vocab and tokenizer.tokenize(marker) != [marker]:
            to_register.append(AddedToken(marker, normalized=False, special=True))
    if to_register:
        tokenizer.add_special_tokens({"additional_special_tokens": to_register}, replace_extra_special_tokens=False)


def _check_local_directory(directory: Path) -> None:
    if not directory.is_dir():
        raise OSError(f"{directory} is a file, not a checkpoint directory.")
    if not (directory / "config.json").is_file() and not (directory / "modules.json").is_file():
        raise OSError(f"{directory} is not a checkpoint directory: it has no config.json (nor modules.json).")


def _bert_fields(config_values: dict) -> dict:
    """The BERT fields of a ``config.json`` (``architectures`` and every non-BERT key dropped)."""
    bert_fields = set(BertConfig.__dataclass_fields__)
    return {key: value for key, value in config_values.items() if key in bert_fields and key != "architectures"}
