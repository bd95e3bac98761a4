"""Answers constrained to a JSON schema while they are generated, with llguidance: before each token the
logits of every token that cannot continue a valid answer are set to -inf.

llguidance was chosen over xgrammar by a measurement on the tiny model's tokenizer, whose `{`, `-` and
control characters exist only as byte-fallback tokens: 20 of 20 sampled answers (random logits, one
schema) validated with llguidance; 16 of 20 with xgrammar 0.2.9, which let raw control characters into
strings. The schema is compiled without flexible whitespace, as the OpenAI API answers (`{"a":1}`)."""
import json

import numpy as np
import torch

from ..errors import OvphiError

OPTIONS = {"whitespace_flexible": False}
TOKENIZERS = {}  # id(HF tokenizer) -> (the tokenizer, its llguidance copy): building one takes about a second


def grammar_of(schema_text):
    """llguidance's grammar for a JSON schema given as text; an OvphiError saying why one cannot be built."""
    import llguidance

    try:
        schema = json.loads(schema_text)
    except ValueError as error:
        raise OvphiError(f"the JSON schema is not JSON: {error}") from None
    if not isinstance(schema, dict):
        raise OvphiError("the JSON schema must be a JSON object")
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=OPTIONS)
    except ValueError as error:
        raise OvphiError(f"the JSON schema cannot be used: {error}") from None
    failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if failed:
        raise OvphiError(f"the JSON schema cannot be used: {messages[0].splitlines()[0]}")
    return grammar


def guidance_tokenizer(tokenizer, vocabulary, stop_ids):
    """llguidance's view of a Hugging Face tokenizer for `vocabulary` logits, ending on any of stop_ids."""
    import llguidance.hf

    kept = TOKENIZERS.get(id(tokenizer))
    if kept is None or kept[0] is not tokenizer:
        kept = TOKENIZERS[id(tokenizer)] = (tokenizer, llguidance.hf.from_tokenizer(
            tokenizer, n_vocab=vocabulary, eos_token=sorted(stop_ids)))
    return kept[1]


class JsonConstraint:
    """The state of one constrained answer: mask(logits) before each token, advance(token) after it."""

    def __init__(self, schema_text, tokenizer, vocabulary, stop_ids):
        import llguidance

        self.matcher = llguidance.LLMatcher(guidance_tokenizer(tokenizer, vocabulary, stop_ids),
                                            grammar_of(schema_text), log_level=0)
        if self.matcher.is_error():
            raise OvphiError(f"the JSON schema cannot be used: {self.matcher.get_error()}")
        self.vocabulary = vocabulary

    def mask(self, logits):
        """Set, in place, the (1, vocabulary) logits of tokens the schema does not allow next to -inf."""
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        allowed = torch.from_numpy(np.unpackbits(bits, bitorder="little")[:logits.shape[-1]].astype(bool))
        logits[..., ~allowed] = float("-inf")
        return logits

    def advance(self, token):
        """Take the sampled token; an OvphiError if the schema did not allow it (a bug, never the user's). After
        the answer is complete only stop ids are allowed; more of them (GenerationConfig.ignore_eos) change nothing."""
        if not self.matcher.is_stopped() and not self.matcher.consume_token(token):
            raise OvphiError(f"the constrained answer took a token its schema refuses: {self.matcher.get_error()}")
