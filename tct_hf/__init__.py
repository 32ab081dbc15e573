"""tct_hf: TCT-ColBERT (in-batch knowledge distillation from a ColBERT teacher) for the Hugging Face ecosystem."""

from transformers import AutoConfig, AutoModel

from .configuration_colbert import ColBERTConfig
from .configuration_tct import TCTConfig
from .conversion import read_foreign_checkpoint
from .modeling_colbert import ColBERTModel, ColBERTOutput
from .modeling_tct import TCTModel, TCTOutput

__version__ = "0.1.0"

# The student keeps model_type "bert" (a saved student is a plain BERT checkpoint for every BERT loader), so
# AutoConfig cannot take a second "bert": register the model class only. The teacher has its own model type.
# `register_for_auto_class` makes save_pretrained write `auto_map` and copy the configuration/modeling files next
# to the weights, so `AutoModel.from_pretrained(dir, trust_remote_code=True)` works without tct_hf installed.
AutoModel.register(TCTConfig, TCTModel, exist_ok=True)
AutoConfig.register(ColBERTConfig.model_type, ColBERTConfig, exist_ok=True)
AutoModel.register(ColBERTConfig, ColBERTModel, exist_ok=True)
# Foreign checkpoint layouts (Stanford, sentence-transformers multi-vector, PyLate) are converted outside the
# travelling modeling file: registering the reader lets ColBERTModel.from_pretrained load them.
ColBERTModel.register_checkpoint_reader(read_foreign_checkpoint)
for _config_class, _model_class in ((TCTConfig, TCTModel), (ColBERTConfig, ColBERTModel)):
    _config_class.register_for_auto_class()
    _model_class.register_for_auto_class("AutoModel")

__all__ = ["ColBERTConfig", "ColBERTModel", "ColBERTOutput", "TCTConfig", "TCTModel", "TCTOutput", "__version__"]
