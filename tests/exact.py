"""The precisions a token-for-token comparison states for every OpenVINO side of it. OpenVINO's CPU defaults
differ by CPU kind (bf16 compute on a Xeon with AMX, f32 on an AVX2 EPYC; a u8 KV cache on both), and neither a
bf16 matmul nor a prefill into a quantized KV cache is promised to give the tokens another path gives. And the ids
a PyTorch reference must not choose, as no ovphi engine does."""
EXACT = dict(precision="f32", kv_cache_precision="f32")
EXACT_PROPERTIES = {"INFERENCE_PRECISION_HINT": EXACT["precision"], "KV_CACHE_PRECISION": EXACT["kv_cache_precision"]}
EXACT_FLAGS = tuple(item for name, value in EXACT.items() for item in (f"--{name.replace('_', '-')}", value))


def tokenless_ids(processor, model):
    """The ids the model gives logits for that have no token (1,069 to 1,087 in the tiny model): ovphi's sampler
    masks them and the IR holds them at -inf, so a PyTorch reference's generate() suppresses them."""
    return list(range(len(processor.tokenizer), model.config.vocab_size))
