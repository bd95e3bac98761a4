"""ovphi's own Phi-3.5-vision (model_type phi3_v) and the builders of its random checkpoints."""
from .configuration_phi3_v import Phi3VConfig
from .image_processing_phi3_v import Phi3VImageProcessor
from .modeling_phi3_v import Phi3VForCausalLM
from .processing_phi3_v import Phi3VProcessor
