"""Per-IR weight statistics: how many weight parameters are stored as INT4, INT8 or float."""
import openvino as ov

WEIGHT_USERS = {"MatMul", "Gather", "Convolution"}
PASS_THROUGH = {"Convert", "Reshape", "Transpose", "Unsqueeze", "Squeeze"}
DEQUANT = {"Subtract", "Multiply"}  # weight on port 0; zero points and scales on port 1
BUCKETS = {"u4": "int4", "i4": "int4", "nf4": "int4", "u8": "int8", "i8": "int8",
           "f16": "float", "bf16": "float", "f32": "float"}


def feeds_a_weight_user(output, depth=0):
    """True when this value reaches a MatMul/Gather/Convolution as data (not as a scale or zero point)."""
    for target in output.get_target_inputs():
        node = target.get_node()
        kind = node.get_type_name()
        if kind in WEIGHT_USERS:
            return True
        if depth < 8 and (kind in PASS_THROUGH or (kind in DEQUANT and target.get_index() == 0)):
            if feeds_a_weight_user(node.output(0), depth + 1):
                return True
    return False


def weight_stats(model):
    """{"int4": n, "int8": n, "float": n} weight parameters of an ov.Model, plus percentages."""
    counts = {"int4": 0, "int8": 0, "float": 0}
    for node in model.get_ops():
        if node.get_type_name() != "Constant" or len(node.get_output_shape(0)) < 2:
            continue
        bucket = BUCKETS.get(node.get_element_type().get_type_name())
        if bucket and feeds_a_weight_user(node.output(0)):
            size = 1
            for dim in node.get_output_shape(0):
                size *= dim
            counts[bucket] += size
    total = sum(counts.values()) or 1
    return {**counts, **{f"{k}_percent": round(100.0 * v / total, 2) for k, v in list(counts.items())}}


def ir_stats(ir_dir):
    """weight_stats of every openvino_*_model.xml in an IR folder, keyed by part name, plus file sizes."""
    core = ov.Core()
    stats = {}
    for xml in sorted(ir_dir.glob("openvino_*_model.xml")):
        part = xml.stem[len("openvino_"):-len("_model")]
        stats[part] = weight_stats(core.read_model(xml))
        stats[part]["bytes"] = xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    return stats
