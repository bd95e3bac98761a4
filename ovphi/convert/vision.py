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
# Static INT8 is kept only if the encoder's output stays this close to the float one on a held-out image: a
# cosine of 0.995 is a relative error of about 10 % per token (sqrt(2 (1 - cosine))), as far as we let the
# image features drift; weight-only INT8 measures above 0.999. Full size, random weights: 0.9997.
MIN_COSINE = 0.995
F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def choose_vision(flags):
    """(quantization, reason) for `--vision auto` on a CPU with these flags."""
    found = int8_dot_products(flags)
    if found:
        return "int8-static", f"auto: this CPU has int8 dot products ({', '.join(found)})"
    return "int8", "auto: this CPU has no int8 dot products (AMX, AVX512-VNNI, AVX-VNNI), where static INT8 is no faster"


def image_crops(processor, image):
    """[crops, 3, 336, 336] float32 pixels of one image."""
    pixels = processor(image, return_tensors="pt")["pixel_values"].numpy()
    return np.ascontiguousarray(pixels.reshape(-1, *pixels.shape[-3:]), dtype=np.float32)


def calibration_items(processor, samples):
    """One [1, 3, 336, 336] item per HD crop: nncf holds every statistics output of a call at once, so one
    crop per call keeps the peak low (full size, 8 images of 5 crops: 6.9 GB peak RSS, against 10.9 GB
    with one image per call; same held-out cosine, 0.99972)."""
    return [crop[None] for sample in samples for crop in image_crops(processor, sample.image)]


def token_cosine(a, b):
    """Mean cosine similarity of two [..., tokens, width] outputs, token by token."""
    a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
    return float(np.mean((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)))


def quantize_vision(export_dir, out_dir, samples, gate=True):
    """Write a static INT8 vision encoder into OUT_DIR, quantized from EXPORT_DIR's float one on the HD crops
    of the first CALIBRATION_IMAGES samples; the last sample, held out, measures it against the float encoder
    at f32. With `gate`, an encoder whose held-out cosine is below MIN_COSINE is not written (the IR keeps
    its weight-only INT8 one). Returns what the manifest records."""
    import nncf
    import openvino as ov

    from ..model.image_processing_phi3_v import Phi3VImageProcessor

    processor = Phi3VImageProcessor.from_pretrained(export_dir)
    calibration = calibration_items(processor, samples[:-1][:CALIBRATION_IMAGES])
    check = image_crops(processor, samples[-1].image)
    core = ov.Core()
    source = core.read_model(export_dir / f"{VISION}.xml")
    reference = core.compile_model(source, "CPU", F32)(check)[0]
    quantized = nncf.quantize(source, nncf.Dataset(calibration), model_type=nncf.ModelType.TRANSFORMER,
                              subset_size=len(calibration))
    cosine = round(token_cosine(core.compile_model(quantized, "CPU", F32)(check)[0], reference), 5)
    record = {"quantization": "int8-static", "calibration_sample_ids": [s.sample_id for s in samples[:-1][:CALIBRATION_IMAGES]],
              "check_sample_id": samples[-1].sample_id, "check_cosine_vs_float": cosine}
    if gate and cosine < MIN_COSINE:
        return record | {"quantization": "int8 weights", "kept_weight_only_because":
                         f"static INT8's held-out cosine {cosine} is below {MIN_COSINE}"}
    ov.save_model(quantized, out_dir / f"{VISION}.xml")
    return record
