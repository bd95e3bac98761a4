"""Backend `pytorch`: the Hugging Face checkpoint in PyTorch (eager, CPU), driven by the optimum backend's
turn loop with a DynamicCache in place of the stateful IR. The baseline for `ovphi bench` and `ovphi eval`."""
from pathlib import Path

import torch
from transformers.cache_utils import DynamicCache

from ..errors import OvphiError
from ..model import register_auto_classes
from .optimum_backend import OptimumVLM

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


class TorchVLM(OptimumVLM):
    """A phi3_v checkpoint folder in PyTorch; precision (the f32/bf16 hint) picks the dtype, f32 by default."""

    backend = "pytorch"

    def check_folder(self, model_dir):
        folder = Path(model_dir)
        if not (folder / "config.json").exists() or not any(folder.glob("*.safetensors")):
            raise OvphiError(f"{model_dir} is not a Hugging Face checkpoint folder (config.json and *.safetensors)")

    def load_model(self, model_dir, ov_config):
        from ..model.modeling_phi3_v import Phi3VForCausalLM

        if self.device != "CPU":
            raise OvphiError("the pytorch backend runs on CPU only")
        precision = (ov_config or {}).get("INFERENCE_PRECISION_HINT", "f32")
        if precision not in DTYPES:
            raise OvphiError(f"the pytorch backend takes precision {' or '.join(DTYPES)}, not {precision}")
        register_auto_classes()
        self.model = Phi3VForCausalLM.from_pretrained(model_dir, torch_dtype=DTYPES[precision]).eval()
        self.load_processor(model_dir)

    def reset(self):
        super().reset()
        self.cache = DynamicCache()

    def keep_cache(self, length):
        if length == 0:
            self.cache = DynamicCache()
        else:
            self.cache.crop(length)
        self.cached_ids = self.cached_ids[:length]

    @torch.no_grad()
    def text_embeds(self, ids):
        return self.model.model.embed_tokens(ids.clamp(min=0))

    @torch.no_grad()
    def image_features(self, pixel_values, image_sizes):
        return torch.cat(self.model.model.vision_embed_tokens(pixel_values, image_sizes))

    @torch.no_grad()
    def forward(self, embeds, total_length):
        start = len(self.cached_ids)
        out = self.model(inputs_embeds=embeds, past_key_values=self.cache, use_cache=True,
                         position_ids=torch.arange(start, total_length)[None],
                         attention_mask=torch.ones(1, total_length, dtype=torch.long))
        return out.logits[0].float()
