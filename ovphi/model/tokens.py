"""Tokens that end an assistant turn (no torch or transformers needed, so genai-only code can use it)."""

STOP_TOKENS = ["<|end|>", "<|endoftext|>", "<|assistant|>"]  # config.json's eos 2 runs on past the answer


def stop_token_ids(tokenizer):
    """Ids of the STOP_TOKENS in a tokenizer (transformers or `tokenizers`: anything with get_vocab())."""
    vocab = tokenizer.get_vocab()
    return [vocab[token] for token in STOP_TOKENS if token in vocab]


def folder_stop_token_ids(folder):
    """Stop ids of a model folder: those `ovphi convert` / make-checkpoint recorded in generation_config.json,
    or, where it holds a lone eos (the published config's 2), STOP_TOKENS looked up in tokenizer.json."""
    import json
    from pathlib import Path

    generation_file = Path(folder) / "generation_config.json"
    recorded = json.loads(generation_file.read_text()).get("eos_token_id") if generation_file.exists() else None
    if isinstance(recorded, list) and len(recorded) > 1:
        return recorded
    tokenizer_file = Path(folder) / "tokenizer.json"
    if not tokenizer_file.exists():
        return [recorded] if isinstance(recorded, int) else []
    added = {token["content"]: token["id"] for token in json.loads(tokenizer_file.read_text())["added_tokens"]}
    return [added[token] for token in STOP_TOKENS if token in added]
