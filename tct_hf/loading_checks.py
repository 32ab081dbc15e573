"""What both models' ``from_pretrained`` check about what they load: one home for the student and the teacher.

- the architecture: our models are BERTs; a ``config.json`` of another architecture (DistilBERT, RoBERTa...) is
  refused with a message naming it and saying what to do, instead of loading it as a BERT with random layers;
- the weights: a load that leaves a backbone weight freshly initialised (missing from the checkpoint) is an error,
  except the weights the caller names as new (the projection of a new teacher; the student's unused pooler);
- ``.bin`` weights go through torch's ``weights_only`` unpickler (transformers' loader): a pickle that references
  anything but tensors and plain containers is refused with an error naming the file, and nothing in it runs;
- the tokenizer, also in its 2021 form (``vocab.txt`` + ``tokenizer_config.json`` + ``special_tokens_map.json``
  without ``tokenizer.json``).

Both travelling sets import this file, so ``save_pretrained`` copies it next to either checkpoint.
This file imports only transformers and the standard library (it travels with checkpoints).
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import AutoTokenizer, BertConfig, PreTrainedTokenizerBase

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token", "subfolder")


def hub_kwargs(kwargs: dict) -> dict:
    """The keyword arguments of ``from_pretrained`` that say where files come from (passed on to other loaders)."""
    return {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}


def check_architecture(config_values: dict, where: str, model_name: str, accepted: tuple[str, ...]) -> None:
    """Refuse a ``config.json`` whose ``model_type`` is not in ``accepted`` (no ``model_type``, as in 2021-era BERT
    configs, is accepted when every declared architecture is a BERT one)."""
    model_type = config_values.get("model_type")
    architectures = [str(name) for name in config_values.get("architectures") or []]
    if model_type is None:
        if all(name.startswith("Bert") or name == "HF_ColBERT" for name in architectures):
            return
        described = ", ".join(architectures)
    elif model_type in accepted:
        return
    else:
        described = f"model_type {model_type!r}" + (f" ({', '.join(architectures)})" if architectures else "")
    advice = (
        "it is a sentence-transformers directory: load it with SentenceTransformer(dir) (the tct-hf commands: "
        "--encoder-type sentence-transformers)"
        if Path(where, "modules.json").is_file()
        else "start from a BERT checkpoint (e.g. bert-base-uncased), or load this model with its own class; a "
        "sentence-transformers model goes through SentenceTransformer(dir) (tct-hf: --encoder-type "
        "sentence-transformers)"
    )
    raise OSError(
        f"{where}: config.json describes a {described} model; {model_name} is a BERT and cannot load it: {advice}."
    )


def check_no_fresh_weights(loading_info: dict, where: str, model_name: str, allowed_prefixes: tuple[str, ...] = ()):
    """Raise OSError when the load left a weight freshly initialised (missing from the checkpoint), except the keys
    starting with ``allowed_prefixes``: random weights in place of the checkpoint's would give vectors that differ
    from one load to the next."""
    fresh = [key for key in loading_info.get("missing_keys", ()) if not key.startswith(allowed_prefixes)]
    if fresh:
        shown = ", ".join(sorted(fresh)[:6]) + (", ..." if len(fresh) > 6 else "")
        raise OSError(
            f"{where}: {len(fresh)} weight(s) of {model_name} are missing from the checkpoint and would be randomly "
            f"initialised ({shown}): the checkpoint is not a complete BERT of this configuration (another "
            "architecture, a different size or a truncated file). Give a complete BERT checkpoint."
        )


def unsafe_pickle_error(where: str | os.PathLike, error: Exception) -> OSError:
    """The error for a ``.bin`` that torch's ``weights_only`` unpickler refused (it ran nothing); ``where`` is the
    file or the checkpoint directory (or Hub id) that holds it."""
    path = Path(where)
    files = (
        [str(path)] if path.is_file() else [str(path / name) for name in PICKLED_WEIGHTS if (path / name).is_file()]
    )
    named = ", ".join(files) if files else f"the pytorch_model.bin of {where}"
    reason = next((line.strip() for line in str(error).splitlines() if "Unsupported global" in line), "")
    return OSError(
        f"{named}: refused to load: the pickle references objects other than tensors and plain containers"
        f"{' (' + reason + ')' if reason else ''}. Nothing in it ran. Only weights are read from .bin files; get a "
        "safetensors copy of this checkpoint from a source you trust."
    )


def load_tokenizer(path: str | os.PathLike, kwargs: dict) -> PreTrainedTokenizerBase | None:
    """The tokenizer saved with the checkpoint, or None when a local directory has no tokenizer files."""
    directory = Path(path)
    if directory.is_dir() and not any((directory / name).is_file() for name in TOKENIZER_FILES):
        return None
    # Passing a config keeps AutoTokenizer from re-reading config.json (whose auto_map would ask for trust_remote_code
    # a second time, and whose 2021-era form may lack model_type). The tokenizer class comes from
    # tokenizer_config.json; when that file names none (vocab.txt + special_tokens_map.json, no tokenizer.json),
    # AutoTokenizer picks the class mapped to the config's type: a plain BertConfig gives BERT's WordPiece
    # tokenizer, which our backbones use (our own config classes are mapped to no tokenizer).
    return AutoTokenizer.from_pretrained(str(path), config=BertConfig(), **hub_kwargs(kwargs))


def read_config_values(path: str | os.PathLike, kwargs: dict) -> dict:
    """The raw ``config.json`` of a local directory or Hub repository (before any config class reads it)."""
    return BertConfig.get_config_dict(str(path), **hub_kwargs(kwargs))[0]
