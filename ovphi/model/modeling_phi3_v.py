"""Phi-3.5-vision: CLIP ViT-L/14-336 with HD crops, an MLP projector and the Phi-3-mini decoder.

Parameter names follow the published checkpoint. Image features replace the positions whose input id
is negative (the processor writes -N for the tokens of image N).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, GenerationMixin, PreTrainedModel
from transformers.cache_utils import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_phi3_v import Phi3VConfig

CROP = 336
PATCHES = 24  # CLIP patches per crop side (336 / 14)


class Phi3RMSNorm(nn.Module):
    def __init__(self, width, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x):
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


class Phi3LongRoPE(nn.Module):
    """LongRoPE ("su"): short factors while the sequence fits in original_max_position_embeddings, long beyond.

    The choice is a tensor op on max(position_ids), so a traced graph keeps both branches.
    """

    def __init__(self, config):
        super().__init__()
        dim = config.head_dim
        exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
        base = config.rope_theta ** exponents
        short = torch.tensor(config.rope_scaling["short_factor"], dtype=torch.float32)
        long = torch.tensor(config.rope_scaling["long_factor"], dtype=torch.float32)
        self.register_buffer("short_inv_freq", 1.0 / (short * base), persistent=False)
        self.register_buffer("long_inv_freq", 1.0 / (long * base), persistent=False)
        self.original_max = config.original_max_position_embeddings
        ratio = config.max_position_embeddings / self.original_max
        self.scale = 1.0 if ratio <= 1.0 else math.sqrt(1 + math.log(ratio) / math.log(self.original_max))

    def forward(self, position_ids, dtype):
        is_long = position_ids.max() + 1 > self.original_max
        inv_freq = torch.where(is_long, self.long_inv_freq, self.short_inv_freq)
        freqs = position_ids[:, :, None].float() * inv_freq[None, None, :]
        angles = torch.cat((freqs, freqs), dim=-1)
        return (angles.cos() * self.scale).to(dtype), (angles.sin() * self.scale).to(dtype)


def rotate_half(x):
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class Phi3Attention(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = config.head_dim
        qkv_width = (self.num_heads + 2 * self.num_kv_heads) * self.head_dim
        self.qkv_proj = nn.Linear(config.hidden_size, qkv_width, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)

    def forward(self, hidden_states, cos, sin, mask, past_key_values):
        batch, length, _ = hidden_states.shape
        q_width, kv_width = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        q, k, v = self.qkv_proj(hidden_states).split([q_width, kv_width, kv_width], dim=-1)
        q = q.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)
        groups = self.num_heads // self.num_kv_heads
        if groups > 1:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, q_width))


class Phi3MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate_up_proj = nn.Linear(config.hidden_size, 2 * config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(up * F.silu(gate))


class Phi3DecoderLayer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.self_attn = Phi3Attention(config, layer_idx)
        self.mlp = Phi3MLP(config)
        self.input_layernorm = Phi3RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = Phi3RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, mask, past_key_values):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, past_key_values)
        return x + self.mlp(self.post_attention_layernorm(x))


def merge_2x2(features, rows, cols):
    """(rows*cols, 576, C) CLIP patches of a crop grid -> (rows*12, cols*12, 4C) with 2x2 neighbours merged."""
    channels = features.shape[-1]
    half = PATCHES // 2
    grid = features.reshape(rows, cols, half, 2, half, 2, channels)
    grid = grid.permute(0, 2, 1, 4, 3, 5, 6)  # rows, 12, cols, 12, 2 (dy), 2 (dx), C
    return grid.reshape(rows * half, cols * half, 4 * channels)


class Phi3ImageEmbedding(nn.Module):
    """CLIP features of every crop, stitched into the HD grid with separators, then projected."""

    def __init__(self, config):
        super().__init__()
        clip = config.clip_settings()
        self.img_processor = CLIPVisionModel(CLIPVisionConfig(**clip))
        self.layer_idx = config.img_processor.get("layer_idx", -2)
        merged = 4 * config.img_processor["image_dim_out"]
        self.glb_GN = nn.Parameter(torch.zeros(1, 1, merged))
        self.sub_GN = nn.Parameter(torch.zeros(1, 1, 1, merged))
        self.img_projection = nn.Sequential(
            nn.Linear(merged, config.hidden_size), nn.GELU(), nn.Linear(config.hidden_size, config.hidden_size)
        )

    def get_img_features(self, pixel_values):
        """(N, 3, 336, 336) -> (N, 576, 1024): second-last CLIP layer without the class token."""
        out = self.img_processor(pixel_values, output_hidden_states=True)
        return out.hidden_states[self.layer_idx][:, 1:]

    def with_row_separators(self, grid):
        rows, cols, channels = grid.shape
        separator = self.sub_GN.reshape(1, 1, channels).expand(rows, 1, channels)
        return torch.cat([grid, separator], dim=1).reshape(-1, channels)

    def forward(self, pixel_values, image_sizes):
        """pixel_values (images, crops+1, 3, 336, 336) with the global view first -> list of (tokens, hidden)."""
        images, crops = pixel_values.shape[:2]
        features = self.get_img_features(pixel_values.flatten(0, 1).to(self.glb_GN.dtype))
        features = features.reshape(images, crops, PATCHES * PATCHES, -1)
        projected = []
        for image, (height, width) in enumerate(image_sizes.tolist()):
            rows, cols = int(height) // CROP, int(width) // CROP
            sub = merge_2x2(features[image, 1 : 1 + rows * cols], rows, cols)
            glb = merge_2x2(features[image, :1], 1, 1)
            tokens = torch.cat(
                [self.with_row_separators(sub), self.glb_GN.reshape(1, -1), self.with_row_separators(glb)]
            )
            projected.append(self.img_projection(tokens))
        return projected


class Phi3VPreTrainedModel(PreTrainedModel):
    config_class = Phi3VConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["Phi3DecoderLayer"]
    _supports_sdpa = True
    _supports_cache_class = True

    def _init_weights(self, module):
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()


def causal_mask(attention_mask, query_length, dtype):
    """(batch, kv) padding mask -> additive (batch, 1, query, kv) mask; queries are the last positions."""
    kv_length = attention_mask.shape[-1]
    key_pos = torch.arange(kv_length, device=attention_mask.device)
    query_pos = key_pos[kv_length - query_length :]
    allowed = (key_pos[None, :] <= query_pos[:, None])[None, None] & attention_mask[:, None, None, :].bool()
    return torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


class Phi3VModel(Phi3VPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.vision_embed_tokens = Phi3ImageEmbedding(config)
        self.layers = nn.ModuleList(Phi3DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = Phi3RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = Phi3LongRoPE(config)
        self.post_init()

    def embed(self, input_ids, pixel_values=None, image_sizes=None):
        """Token embeddings with image features written where input_ids are negative."""
        embeds = self.embed_tokens(input_ids.clamp(min=0))
        image_positions = input_ids < 0
        if pixel_values is None or not image_positions.any():
            return embeds
        features = torch.cat(self.vision_embed_tokens(pixel_values, image_sizes)).to(embeds.dtype)
        if features.shape[0] != int(image_positions.sum()):
            raise ValueError(f"{int(image_positions.sum())} image tokens in the prompt, {features.shape[0]} features")
        embeds = embeds.clone()
        embeds[image_positions] = features
        return embeds

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, pixel_values=None, image_sizes=None, use_cache=None, **kwargs):
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, pixel_values, image_sizes)
        use_cache = self.config.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None:
            past_key_values = DynamicCache()
        batch, length = inputs_embeds.shape[:2]
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if attention_mask is None:
            attention_mask = torch.ones(batch, past + length, dtype=torch.long, device=inputs_embeds.device)
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -length:]
        mask = causal_mask(attention_mask, length, inputs_embeds.dtype)
        cos, sin = self.rotary_emb(position_ids, inputs_embeds.dtype)
        hidden = inputs_embeds
        for layer in self.layers:
            hidden = layer(hidden, cos, sin, mask, past_key_values if use_cache else None)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(hidden), past_key_values=past_key_values)


class Phi3VForCausalLM(Phi3VPreTrainedModel, GenerationMixin):
    _tied_weights_keys = []

    def __init__(self, config):
        super().__init__(config)
        self.model = Phi3VModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, pixel_values=None, image_sizes=None, labels=None, use_cache=None,
                logits_to_keep=0, **kwargs):
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds,
                         pixel_values=pixel_values, image_sizes=image_sizes, use_cache=use_cache)
        logits = self.lm_head(out.last_hidden_state[:, -logits_to_keep:]).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, pixel_values=None,
                                      image_sizes=None, cache_position=None, **kwargs):
        inputs = super().prepare_inputs_for_generation(
            input_ids, past_key_values=past_key_values, cache_position=cache_position, **kwargs
        )
        if cache_position is None or int(cache_position[0]) == 0:
            inputs["pixel_values"], inputs["image_sizes"] = pixel_values, image_sizes
        return inputs
