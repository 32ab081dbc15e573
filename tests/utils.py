"""Shared test fixtures: tiny random BERT checkpoints with a small real WordPiece vocabulary.

Like transformers' own tests, models are built from a `BertConfig` in code (hidden 32, 2 layers), so the
default suite needs no download and runs in seconds.
"""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertForPreTraining, BertModel, BertTokenizer

SPECIAL_TOKENS = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = (
    "the of and to in is was for on that with as by at from it an be are this which or his "
    "what how why when where who does do can did many much cost long time water river city "
    "country people heat air flow wing body boundary layer pressure speed number high low "
    "temperature effect surface shock wave theory solution problem method results data test "
    "paris france capital population history war music art film game food drink health "
    "blood heart cell plant animal tax law money bank price market company car engine "
    "q d query document passage search rank retrieval dense sparse model"
).split()


def tiny_vocab() -> list[str]:
    """Special tokens, punctuation, single characters, a few hundred whole words and '##' suffix pieces."""
    chars = list(string.ascii_lowercase) + list(string.digits)
    punctuation = list(string.punctuation)
    suffixes = [f"##{c}" for c in chars] + ["##s", "##ing", "##ed", "##er", "##ly", "##tion"]
    vocab: list[str] = []
    for token in SPECIAL_TOKENS + punctuation + chars + WORDS + suffixes:
        if token not in vocab:
            vocab.append(token)
    return vocab


def tiny_bert_config(vocab_size: int, **overrides) -> BertConfig:
    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def write_tokenizer(directory: str | Path) -> BertTokenizer:
    """Write vocab.txt and save an uncased BertTokenizer (with its tokenizer.json) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer.from_pretrained(str(directory), do_lower_case=True)
    tokenizer.save_pretrained(str(directory))
    return tokenizer


def write_tiny_bert(directory: str | Path, *, pretraining_heads: bool = False, seed: int = 0, **overrides) -> Path:
    """Save a random tiny BERT checkpoint (plain `BertModel`, or `BertForPreTraining` with `cls.*` heads,
    like castorini/tct_colbert-msmarco) plus its tokenizer into `directory` and return the path."""
    directory = Path(directory)
    tokenizer = write_tokenizer(directory)
    torch.manual_seed(seed)
    config = tiny_bert_config(len(tokenizer), **overrides)
    model = BertForPreTraining(config) if pretraining_heads else BertModel(config)
    model.eval()
    model.save_pretrained(str(directory))
    return directory


# Runs first in the child: drop the editable install's import hooks and the repository from sys.path.
ISOLATE = """
import sys
sys.meta_path = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path_hooks = [h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")]
sys.path_importer_cache.clear()
sys.path = [p for p in sys.path if p and not p.rstrip("/").endswith(REPO)]
try:
    import tct_hf
except ImportError:
    pass
else:
    raise SystemExit("tct_hf is importable in the isolated process: " + tct_hf.__file__)
"""


def run_isolated(code: str, cwd: Path) -> dict:
    """Run `code` with `python -I` in `cwd` without tct_hf importable; it prints one line "RESULT <json>"."""
    repo = str(Path(__file__).resolve().parents[1]).rstrip("/")  # tests/utils.py -> the repository
    script = f"REPO = {repo!r}\n{ISOLATE}\n{code}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(lines[0][len("RESULT ") :])
