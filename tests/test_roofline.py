"""The roofline's FLOP count against the IR that convert exports."""
import json

import openvino as ov

from ovphi import roofline


def test_clip_flops_count_the_layers_the_exported_vision_encoder_runs(int4_ir):
    config = json.loads((int4_ir / "config.json").read_text())
    encoder = ov.Core().read_model(int4_ir / "openvino_vision_embeddings_model.xml")
    linear = [op for op in encoder.get_ops() if op.get_type_name() == "MatMul"]  # attention is one SDPA op
    tokens, width = linear[0].get_input_partial_shape(0)[1].get_length(), linear[0].get_input_shape(1)[0]
    linear_flops = sum(2 * tokens * op.get_input_shape(1)[0] * op.get_input_shape(1)[1] for op in linear)
    layers = len(linear) // 6  # q, k, v, out, fc1, fc2
    assert roofline.clip_flops(config, 1) == linear_flops + layers * 4 * width * tokens * tokens
