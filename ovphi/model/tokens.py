"""Tokens that end an assistant turn (no torch or transformers needed, so genai-only code can use it)."""

STOP_TOKENS = ["<|end|>", "<|endoftext|>", "<|assistant|>"]  # config.json's eos 2 runs on past the answer


def stop_token_ids(tokenizer):
    """Ids of the STOP_TOKENS in a tokenizer (transformers or `tokenizers`: anything with get_vocab())."""
    vocab = tokenizer.get_vocab()
    return [vocab[token] for token in STOP_TOKENS if token in vocab]
