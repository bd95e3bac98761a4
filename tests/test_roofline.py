"""The roofline's counts: bytes per generated token, prefill FLOPs, and CLIP against the exported IR."""
import json

import openvino as ov

from ovphi import roofline

SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 4, "vocab_size": 100, "img_processor": {"hidden_size": 32, "num_hidden_layers": 2,
                                                                         "intermediate_size": 64}}


def test_decode_reads_every_weight_and_the_kv_cache_so_far():
    per_position = 2 * 2 * 4 * 16  # keys and values, 2 layers, 4 heads of 16
    assert roofline.kv_bytes_per_position(SMALL, kv_bytes=2) == 2 * per_position
    assert roofline.decode_bytes(1000, SMALL, position=10, kv_bytes=1) == 1000 + 10 * per_position


def test_prefill_flops_count_matmuls_attention_clip_and_projector():
    tokens = 7
    per_token = 2 * (64 * (64 + 2 * 64) + 64 * 64 + 3 * 64 * 128)  # qkv, o, gate_up and down per layer
    language = 2 * per_token * tokens + 2 * 2 * 64 * tokens * tokens + 2 * 64 * 100
    assert roofline.prefill_flops(SMALL, tokens, crops=0) == language
    projector = 2 * 156 * (4 * 32 * 64 + 64 * 64)  # 144 merged patches + 12 row ends, two linear layers
    assert roofline.prefill_flops(SMALL, tokens, crops=1) == language + roofline.clip_flops(SMALL, 1) + projector


def test_clip_flops_count_the_layers_the_exported_vision_encoder_runs(int4_ir):
    config = json.loads((int4_ir / "config.json").read_text())
    encoder = ov.Core().read_model(int4_ir / "openvino_vision_embeddings_model.xml")
    linear = [op for op in encoder.get_ops() if op.get_type_name() == "MatMul"]  # attention is one SDPA op
    tokens, width = linear[0].get_input_partial_shape(0)[1].get_length(), linear[0].get_input_shape(1)[0]
    linear_flops = sum(2 * tokens * op.get_input_shape(1)[0] * op.get_input_shape(1)[1] for op in linear)
    layers = len(linear) // 6  # q, k, v, out, fc1, fc2
    assert roofline.clip_flops(config, 1) == linear_flops + layers * 4 * width * tokens * tokens
