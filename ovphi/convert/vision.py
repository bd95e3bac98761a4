"""Static INT8 for the vision encoder: nncf.quantize, calibrated on the HD crops of a few calibration images.

Weight-only INT8 unpacks the CLIP weights on every call and computes in float; with INT8 activations too the
encoder runs on the CPU's int8 dot-product units: at full size it halved the encoder's time on a Xeon with AMX
and gained nothing on an AVX2-only CPU (benchmarks/README.md). So `--vision auto` picks static INT8 only on a CPU
with int8 dot products.
"""
import numpy as np

from ..cpu import int8_dot_products

VISION = "openvino_vision_embeddings_model"
CALIBRATION_IMAGES = 8
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def choose_vision(flags):
    """(quantization, reason) for `--vision auto` on a CPU with these flags."""
    found = int8_dot_products(flags)
    if found:
        return "int8-static", f"auto: this CPU has int8 dot products ({', '.join(found)})"
    return "int8", "auto: this CPU has no int8 dot products (AMX, AVX512-VNNI, AVX-VNNI), where static INT8 is no faster"


def image_crops(processor, image):
    """[crops, 3, 336, 336] float32 pixels of one image: one image is one calibration item."""
    pixels = processor(image, return_tensors="pt")["pixel_values"].numpy()
    return np.ascontiguousarray(pixels.reshape(-1, *pixels.shape[-3:]), dtype=np.float32)


def token_cosine(a, b):
    """Mean cosine similarity of two [..., tokens, width] outputs, token by token."""
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return float(np.mean((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)))


def quantize_vision(export_dir, ir_dir, samples):
    """Write a static INT8 vision encoder into IR_DIR, quantized from EXPORT_DIR's float one on the first
    CALIBRATION_IMAGES samples; the last sample, held out, measures it against the float encoder at f32.
    Returns what the manifest records."""
    import nncf
    import openvino as ov

    from ..model.image_processing_phi3_v import Phi3VImageProcessor

    processor = Phi3VImageProcessor.from_pretrained(export_dir)
    calibration = [image_crops(processor, s.image) for s in samples[:-1][:CALIBRATION_IMAGES]]
    check = image_crops(processor, samples[-1].image)
    core = ov.Core()
    source = core.read_model(export_dir / f"{VISION}.xml")
    reference = core.compile_model(source, "CPU", F32)(check)[0]
    quantized = nncf.quantize(source, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(calibration))
    output = core.compile_model(quantized, "CPU", F32)(check)[0]
    ov.save_model(quantized, ir_dir / f"{VISION}.xml")
    return {"quantization": "int8-static", "calibration_sample_ids": [s.sample_id for s in samples[:-1][:CALIBRATION_IMAGES]],
            "check_sample_id": samples[-1].sample_id, "check_cosine_vs_float": round(token_cosine(output, reference), 5)}
