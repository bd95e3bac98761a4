"""The precisions a token-for-token comparison states for every OpenVINO side of it. OpenVINO's CPU defaults
differ by CPU kind (bf16 compute on a Xeon with AMX, f32 on an AVX2 EPYC; a u8 KV cache on both), and neither a
bf16 matmul nor a prefill into a quantized KV cache is promised to give the tokens another path gives."""
EXACT = dict(precision="f32", kv_cache_precision="f32")
EXACT_PROPERTIES = {"INFERENCE_PRECISION_HINT": EXACT["precision"], "KV_CACHE_PRECISION": EXACT["kv_cache_precision"]}
EXACT_FLAGS = tuple(item for name, value in EXACT.items() for item in (f"--{name.replace('_', '-')}", value))
