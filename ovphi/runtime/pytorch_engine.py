"""Engine `pytorch`: the Hugging Face checkpoint in PyTorch (eager, CPU) through the shared KV loop with a
DynamicCache: the baseline for `ovphi bench` and the reference for `ovphi eval`."""
import copy

import torch
from transformers.cache_utils import DynamicCache

from ..errors import OvphiError
from ..model import register_auto_classes
from ..model.tokens import folder_stop_token_ids
from .engine import Capabilities
from .kv_loop import KVLoopEngine, KVTurnLoop

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def checkpoint_precision(options):
    """The precision the checkpoint is loaded in: --precision, else f32."""
    return options.precision or "f32"


class TorchModel:
    """Phi3VForCausalLM behind the KV loop's four calls (kv_loop.py)."""

    def __init__(self, model):
        self.model = model
        self.cache = DynamicCache()

    @torch.no_grad()
    def text_embeds(self, ids):
        return self.model.model.embed_tokens(ids)

    @torch.no_grad()
    def image_features(self, pixel_values, image_sizes):
        return torch.cat(self.model.model.vision_embed_tokens(pixel_values, image_sizes))

    @torch.no_grad()
    def forward(self, embeds, start, total):
        out = self.model(inputs_embeds=embeds, past_key_values=self.cache, use_cache=True,
                         position_ids=torch.arange(start, total)[None],
                         attention_mask=torch.ones(1, total, dtype=torch.long))
        return out.logits[0].float()

    def keep(self, length, cached):
        if length == 0:
            self.cache = DynamicCache()
        elif length < cached:
            self.cache.crop(length)

    def snapshot(self, length):
        kept = copy.deepcopy(self.cache)
        kept.crop(length)
        return kept, sum(t.numel() * t.element_size() for t in kept.key_cache + kept.value_cache)

    def restore(self, snapshot, length):
        self.cache = copy.deepcopy(snapshot)


class PyTorchEngine(KVLoopEngine):
    name = "pytorch"
    capabilities = Capabilities(folder="checkpoint", logits=True, num_crops_per_call=True, openvino_devices=False,
                                eager=True, sampler=True)

    def check_folder(self):
        if not (self.model_dir / "config.json").exists() or not any(self.model_dir.glob("*.safetensors")):
            raise OvphiError(f"{self.model_dir} is not a Hugging Face checkpoint folder (config.json and"
                             " *.safetensors)")

    @property
    def precision(self):
        return checkpoint_precision(self.options)

    def load_model(self):
        from transformers import AutoProcessor

        from ..model.modeling_phi3_v import Phi3VForCausalLM

        if self.precision not in DTYPES:
            raise OvphiError(f"the pytorch engine takes precision {' or '.join(DTYPES)}, not {self.precision}")
        register_auto_classes()
        self.model = Phi3VForCausalLM.from_pretrained(self.model_dir, torch_dtype=DTYPES[self.precision]).eval()
        self.processor = AutoProcessor.from_pretrained(self.model_dir)
        self.loop = KVTurnLoop(TorchModel(self.model), self.processor, folder_stop_token_ids(self.model_dir),
                               self.config, self.options.prefix_cache_mb << 20)
