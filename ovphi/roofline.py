"""Roofline of this machine for the benchmark: what the hardware allows, to judge what a run reaches.

- read bandwidth with every core (an OpenVINO f32 matrix-vector product over 512 MB, far past the
  caches) and the matmul rate (OpenVINO MatMul 1024x3072x8192) in the precision the CPU plugin infers in
  by default (bf16 where the CPU has AMX or AVX512-BF16, f32 elsewhere), each best and median of several
  runs, measured once the machine is quiet (another busy process on 2 cores doubles every time);
- bytes read per generated token: the language model IR's constants (weights, scales, zero points)
  plus the KV cache up to that position;
- FLOPs of a prefill: the language model's matmuls and attention, plus CLIP and the projector per crop.
"""
import statistics
import time

import numpy as np
import openvino as ov
import psutil

from .errors import OvphiError
from .model.constants_phi3_v import CLIP_VIT_L_336, TOKENS_PER_CROP


def wait_until_quiet(limit_percent=15.0, patience_s=120.0):
    """Wait until the other processes use less than limit_percent of the machine; returns their load."""
    deadline = time.monotonic() + patience_s
    while True:
        busy = psutil.cpu_percent(interval=1.0)
        if busy < limit_percent or time.monotonic() > deadline:
            return busy
        time.sleep(2.0)


def timed_runs(request, runs):
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        request.infer()
        seconds.append(time.perf_counter() - started)
    return min(seconds), statistics.median(seconds)


def read_bandwidth(k=4096, n=32768, runs=10):
    """(best, median) bytes per second read by an f32 vector x matrix product over a 512 MB constant
    matrix (every core; a decode step is such a product)."""
    x = ov.opset13.parameter([1, k], ov.Type.f32)
    matrix = ov.opset13.constant(np.ones((k, n), dtype=np.float32))
    product = ov.opset13.matmul(x, matrix, False, False)
    compiled = ov.Core().compile_model(ov.Model([product], [x]), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(np.ones((1, k), dtype=np.float32)))
    request.infer()
    best, median = timed_runs(request, runs)
    return k * n * 4 / best, k * n * 4 / median


def default_precision():
    """The precision OpenVINO's CPU plugin infers in when not told otherwise: bf16 or f32 (or f16)."""
    return ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()


def matmul_rate(precision, m=1024, k=3072, n=8192, runs=5):
    """(best, median) FLOP/s of an OpenVINO MatMul (m x k) @ (k x n) with constant weights, in PRECISION."""
    a = ov.opset13.parameter([m, k], ov.Type.f32)
    weights = ov.opset13.constant(np.random.default_rng(0).standard_normal((k, n), dtype=np.float32))
    product = ov.opset13.matmul(a, weights, False, False)
    compiled = ov.Core().compile_model(ov.Model([product], [a]), "CPU", {"INFERENCE_PRECISION_HINT": precision})
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(np.random.default_rng(1).standard_normal((m, k), dtype=np.float32)))
    request.infer()
    best, median = timed_runs(request, runs)
    return 2 * m * k * n / best, 2 * m * k * n / median


def measure_machine():
    """Bandwidth and matmul rate, measured on a quiet machine; the other processes' load is recorded."""
    busy = wait_until_quiet()
    bandwidth = read_bandwidth()
    precision = default_precision()
    matmul = matmul_rate(precision)
    return {"read_bandwidth_bytes_per_s": {"best": bandwidth[0], "median": bandwidth[1]},
            "matmul_precision": precision, "matmul_flops_per_s": {"best": matmul[0], "median": matmul[1]},
            "other_processes_cpu_percent": busy}


def weight_bytes(ir_dir):
    """Bytes of every constant in the language model IR: weights, scales and zero points, as stored."""
    model = ov.Core().read_model(f"{ir_dir}/openvino_language_model.xml")
    total = 0
    for node in model.get_ops():
        if node.get_type_name() == "Constant":
            elements = int(np.prod(node.get_output_shape(0), dtype=np.int64))
            total += elements * node.get_output_element_type(0).bitwidth // 8
    if not total:
        raise OvphiError(f"{ir_dir}: no weights found in openvino_language_model.xml")
    return total


def kv_bytes_per_position(config, kv_bytes=1):
    """KV cache bytes one position holds (keys and values of every layer), at kv_bytes per element."""
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    return 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim * kv_bytes


def decode_bytes(weights, config, position, kv_bytes=1):
    """Bytes read to generate the token at `position`: all weights plus the KV cache so far."""
    return weights + kv_bytes_per_position(config, kv_bytes) * position


def clip_flops(config, crops):
    """FLOPs of CLIP (the config's sizes) over `crops` crops: linear layers and attention up to the feature
    layer (hidden_states[layer_idx], -2: the export drops the layers after it); the patch embedding is left out."""
    clip = {key: config["img_processor"].get(key, value) for key, value in CLIP_VIT_L_336.items()}
    width, layers = clip["hidden_size"], clip["num_hidden_layers"] + 1 + config["img_processor"].get("layer_idx", -2)
    tokens = (clip["image_size"] // clip["patch_size"]) ** 2 + 1
    linear = 2 * tokens * layers * (4 * width * width + 2 * width * clip["intermediate_size"])
    return crops * (linear + layers * 4 * width * tokens * tokens)


def prefill_flops(config, prompt_tokens, crops):
    """FLOPs of a first turn: CLIP and the projector over `crops` crops, then the language model's matmuls
    over every prompt token (lm_head for the last one only) and causal attention."""
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    head_dim = hidden // config["num_attention_heads"]
    kv_width = config["num_key_value_heads"] * head_dim
    per_token = layers * (hidden * (hidden + 2 * kv_width) + hidden * hidden + 3 * hidden * inter)
    attention = layers * 2 * hidden * prompt_tokens * prompt_tokens  # QK and AV, causal half of 4*h*P^2
    language = 2 * per_token * prompt_tokens + attention + 2 * hidden * config["vocab_size"]
    width = config["img_processor"].get("hidden_size", CLIP_VIT_L_336["hidden_size"])
    row_ends = int(TOKENS_PER_CROP ** 0.5)  # one separator per row of merged patches
    projector = 2 * crops * (TOKENS_PER_CROP + row_ends) * (4 * width * hidden + hidden * hidden)
    return language + clip_flops(config, crops) + projector
