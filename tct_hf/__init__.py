"""tct_hf: TCT-ColBERT (in-batch knowledge distillation from a ColBERT teacher) for the Hugging Face ecosystem."""

from transformers import AutoModel

from .configuration_tct import TCTConfig
from .modeling_tct import TCTModel, TCTOutput

__version__ = "0.1.0"

# The student keeps model_type "bert" (a saved student is a plain BERT checkpoint for every BERT loader), so
# AutoConfig cannot take a second "bert": register the model class only. `register_for_auto_class` makes
# save_pretrained write `auto_map` and copy the configuration/modeling files next to the weights.
AutoModel.register(TCTConfig, TCTModel, exist_ok=True)
TCTConfig.register_for_auto_class()
TCTModel.register_for_auto_class("AutoModel")

__all__ = ["TCTConfig", "TCTModel", "TCTOutput", "__version__"]
