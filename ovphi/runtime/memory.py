"""What a prompt's KV cache needs, and the check that refuses, before any work, one the machine has no memory for
(every engine that allocates its KV cache as a prompt comes: optimum, genai)."""
import psutil

from ..errors import PromptTooLong


def kv_cache_bytes(config, tokens, element_bytes):
    """The keys and values of `tokens` positions in every layer, at `element_bytes` an element."""
    heads = config["num_attention_heads"]
    head_dim = config["hidden_size"] // heads
    return 2 * config["num_hidden_layers"] * config.get("num_key_value_heads", heads) * head_dim * tokens * element_bytes


def check_free_memory(needed, new_tokens):
    """PromptTooLong when reading `new_tokens` prompt tokens needs more than the memory free now."""
    free = psutil.virtual_memory().available
    if needed > free:
        raise PromptTooLong(f"reading {new_tokens} prompt tokens needs about {needed / 1e9:.1f} GB and"
                            f" {free / 1e9:.1f} GB are free: shorten the prompt or the conversation")
