"""Engine `optimum`: the IR folder's four models loaded with optimum-intel's OVModelForVisualCausalLM and
driven turn by turn by the shared KV loop. The language model IR is stateful: its KV cache stays in the
infer request between turns, so a later turn prefills only its new tokens."""
import logging
from pathlib import Path

import openvino as ov
import torch

from ..model import register_auto_classes
from ..model.constants_phi3_v import crop_count
from ..model.tokens import folder_stop_token_ids
from .cancellable import Cancelled, CancellableModel, CancellableRequest
from .compiled_cache import weight_files
from .engine import Capabilities
from .kv_loop import KVLoopEngine, KVTurnLoop


def load_optimum_model(model_dir, device, properties):
    """OVModelForVisualCausalLM of an IR folder and its processor, with ovphi's own model code."""
    from optimum.intel import OVModelForVisualCausalLM
    from transformers import AutoProcessor

    register_auto_classes()
    optimum_log = logging.getLogger("optimum")
    level = optimum_log.level
    optimum_log.setLevel(logging.ERROR)  # offline, it warns that it could not look the folder up on the hub
    try:
        model = OVModelForVisualCausalLM.from_pretrained(str(Path(model_dir).resolve()), device=device,
                                                         ov_config=properties)
    finally:
        optimum_log.setLevel(level)
    return model, AutoProcessor.from_pretrained(model_dir)


def first_positions(state, length):
    """A copy of a KV state tensor (batch, heads, positions, head size) cut to its first `length` positions:
    a strided copy in C++, not through numpy."""
    end = list(state.shape)
    end[2] = length
    kept = ov.Tensor(state.element_type, end)
    ov.Tensor(state, [0] * len(end), end).copy_to(kept)
    return kept


class OpenVINOModel:
    """The four IRs behind the KV loop's four calls (kv_loop.py). The language model's prefill and the vision
    encoder give way to `stop` (cancellable.py)."""

    # the stateful SDPA of OpenVINO's CPU plugin, given more than one new token and a cache that holds some,
    # takes a slow kernel: 45 us per new token per attended position against 20 ms per token from empty on the
    # full-size model, 2-core Xeon (docs/benchmarks.md); the KV loop's prior until it has timed one itself
    cached_prefill_ratio = 45e-6 / 20e-3

    def __init__(self, model, stop):
        self.model, self.stop = model, stop
        self.language = model.language_model
        self.language.compile()
        self.language.request = CancellableRequest(self.language.request, stop)

    def text_embeds(self, ids):
        return torch.from_numpy(self.model.get_text_embeddings(ids))

    def image_features(self, pixel_values, image_sizes):
        """One picture a call, its padding crops left out: optimum encodes a batch's padded crops too, and a stop
        waits for the plugin to finish the node it is in, which over 136 crops took 3.4 s (static INT8 vision,
        AVX2 EPYC)."""
        vision = self.model.vision_embeddings
        if not isinstance(vision.request, CancellableModel):  # compiled on first use, as optimum does
            vision.compile()
            vision.request = CancellableModel(vision.request, self.stop)
        features = []
        for number, (height, width) in enumerate(image_sizes.tolist()):
            if self.stop.is_set():
                raise Cancelled
            crops = crop_count(height, width)
            features.append(torch.from_numpy(self.model.get_vision_embeddings(
                pixel_values[number:number + 1, :crops], image_sizes=image_sizes[number:number + 1])))
        return torch.cat(features)

    def forward(self, embeds, start, total):
        self.language.request.cancellable = total - start > 1  # a prefill; a decode step ends by itself
        out = self.language.forward(
            input_ids=None, inputs_embeds=embeds, attention_mask=torch.ones(1, total, dtype=torch.long),
            position_ids=torch.arange(start, total)[None], past_key_values=((),) if start else None)
        return out.logits[0].float()

    def keep(self, length, cached):
        if length == 0:
            self.language.request.reset_state()
        elif length < cached:
            for state in self.language.request.query_state():
                state.state = first_positions(state.state, length)
        self.language._past_length = length

    def snapshot(self, length):
        copies = [first_positions(state.state, length) for state in self.language.request.query_state()]
        return copies, sum(copy.byte_size for copy in copies)

    def restore(self, snapshot, length):
        for state, tensor in zip(self.language.request.query_state(), snapshot):
            state.state = tensor
        self.language._past_length = length


class OptimumEngine(KVLoopEngine):
    name = "optimum"
    capabilities = Capabilities(logits=True, num_crops_per_call=True, compiled_cache="all", sampler=True,
                                stops_at_once=True)

    def load_model(self):
        self.model, self.processor = load_optimum_model(self.model_dir, self.device,
                                                        self.options.openvino_properties(self.model_dir))
        openvino_model = OpenVINOModel(self.model, self.stop_requested)
        self.loop = KVTurnLoop(openvino_model, self.processor, folder_stop_token_ids(self.model_dir),
                               self.config, self.options.prefix_cache_mb << 20)

    def mapped_weights(self):
        return weight_files(self.model_dir, self.cache_folder)

    def warm_up_vision(self):
        from PIL import Image

        inputs = self.processor.image_processor([Image.new("RGB", (336, 336), "white")], num_crops=1)
        self.loop.model.image_features(inputs["pixel_values"], inputs["image_sizes"])
