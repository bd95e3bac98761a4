"""Roofline of this machine for the benchmark: what the hardware allows, to judge what a run reaches.

- read bandwidth with every core (an OpenVINO f32 matrix-vector product over 512 MB, far past the
  caches) and the bf16 matmul rate (OpenVINO MatMul 1024x3072x8192), each best and median of several
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
from .model.configuration_phi3_v import CLIP_VIT_L_336


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


def matmul_rate(m=1024, k=3072, n=8192, runs=5):
    """(best, median) FLOP/s of an OpenVINO bf16 MatMul (m x k) @ (k x n) with constant weights."""
    a = ov.opset13.parameter([m, k], ov.Type.f32)
    weights = ov.opset13.constant(np.random.default_rng(0).standard_normal((k, n), dtype=np.float32))
    product = ov.opset13.matmul(a, weights, False, False)
    compiled = ov.Core().compile_model(ov.Model([product], [a]), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    request = compiled.create_infer_request()
    request.set_input_tensor(ov.Tensor(np.random.default_rng(1).standard_normal((m, k), dtype=np.float32)))
    request.infer()
    best, median = timed_runs(request, runs)
    return 2 * m * k * n / best, 2 * m * k * n / median


def measure_machine():
    """Bandwidth and matmul rate, measured on a quiet machine; the other processes' load is recorded."""
    busy = wait_until_quiet()
    bandwidth = read_bandwidth()
    matmul = matmul_rate()
    return {"read_bandwidth_bytes_per_s": {"best": bandwidth[0], "median": bandwidth[1]},
            "bf16_matmul_flops_per_s": {"best": matmul[0], "median": matmul[1]},
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


def prefill_flops(config, prompt_tokens, crops):
    """FLOPs of a first turn: CLIP (the config's sizes) and the projector over `crops` crops, then the language model's
    matmuls over every prompt token (lm_head for the last one only) and causal attention."""
    hidden, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    head_dim = hidden // config["num_attention_heads"]
    kv_width = config["num_key_value_heads"] * head_dim
    per_token = layers * (hidden * (hidden + 2 * kv_width) + hidden * hidden + 3 * hidden * inter)
    attention = layers * 2 * hidden * prompt_tokens * prompt_tokens  # QK and AV, causal half of 4*h*P^2
    language = 2 * per_token * prompt_tokens + attention + 2 * hidden * config["vocab_size"]
    clip = {key: config["img_processor"].get(key, value) for key, value in CLIP_VIT_L_336.items()}
    width, clip_layers = clip["hidden_size"], clip["num_hidden_layers"]
    tokens = (clip["image_size"] // clip["patch_size"]) ** 2 + 1
    clip_params = clip_layers * (4 * width * width + 2 * width * clip["intermediate_size"])
    clip_flops = crops * (2 * clip_params * tokens + clip_layers * 4 * width * tokens * tokens)
    projector_tokens = crops * 156  # 144 merged patches + 12 row separators per crop
    projector = 2 * projector_tokens * (4 * width * hidden + hidden * hidden)
    return language + clip_flops + projector
