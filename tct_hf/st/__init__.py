"""sentence-transformers losses over `tct_hf.losses`: in-batch KD from a ColBERT teacher into any
`SentenceTransformer`, plain or with cached gradients (`CachedInBatchKDLoss`), given to `SentenceTransformerTrainer`
as any of its losses (the batch's texts reach the loss through the trainer's own collator: `texts`); the only package
of tct_hf that imports sentence-transformers' training API.
"""

from .cached_in_batch_kd import CachedInBatchKDLoss
from .columns import to_sentence_transformers_columns
from .data_collator import InBatchKDDataCollator
from .in_batch_kd import InBatchKDLoss

__all__ = ["CachedInBatchKDLoss", "InBatchKDDataCollator", "InBatchKDLoss", "to_sentence_transformers_columns"]
