"""tct_hf: TCT-ColBERT (in-batch knowledge distillation from a ColBERT teacher) for the Hugging Face ecosystem."""

__version__ = "0.1.0"
