"""LongRoPE's two inverse-frequency tables, put back in f32 after an fp16 / int8 / int4 export.

Such an export stores every float constant as f16, these two tables too; at position 9,000 that
moves the rotary angles by up to about one radian (measured on the tiny model), so answers past a
few thousand tokens drift from PyTorch's. ovphi's implementation names the tables
`rotary_emb.short_inv_freq` and `rotary_emb.long_inv_freq`; checkpoint remote code is left alone.
"""
import openvino as ov


def rope_tables(config):
    """{"short_inv_freq": array, "long_inv_freq": array} exactly as the PyTorch model computes them."""
    from ..model.configuration_phi3_v import Phi3VConfig
    from ..model.modeling_phi3_v import Phi3LongRoPE

    rope = Phi3LongRoPE(Phi3VConfig.from_dict(config))
    return {"short_inv_freq": rope.short_inv_freq.numpy(), "long_inv_freq": rope.long_inv_freq.numpy()}


def restore_rope_tables(model, config):
    """Replace the decompressed f16 tables of the language model (an ov.Model, edited in place) by f32 ones;
    returns how many."""
    tables = rope_tables(config)
    replaced = 0
    for node in model.get_ops():
        name = node.get_friendly_name()
        table = next((values for key, values in tables.items() if f"rotary_emb.{key}" in name), None)
        if node.get_type_name() != "Constant" or table is None or node.get_element_type() == ov.Type.f32:
            continue
        exact = ov.opset13.constant(table)
        exact.set_friendly_name(name.replace("_compressed", ""))
        for target in node.output(0).get_target_inputs():
            user = target.get_node()
            if user.get_type_name() == "Convert" and user.get_output_element_type(0) == ov.Type.f32:
                user.output(0).replace(exact.output(0))
                replaced += 1
    return replaced
