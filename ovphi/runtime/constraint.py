"""Answers constrained to a grammar while they are generated, with llguidance: before each token the logits
of every token that cannot continue a valid answer are set to -inf. Grammars are llguidance's Lark, whose
`%json {schema}` is JSON valid against a JSON schema (schema_grammar; the server's tool calls mix it with text).
A Grammar also carries the same language in xgrammar's EBNF (json_ebnf.py), for the genai engines, whose
openvino.genai sampler constrains with xgrammar.

llguidance was chosen over xgrammar by a measurement on the tiny model's tokenizer, whose `{`, `-` and
control characters exist only as byte-fallback tokens: 20 of 20 sampled answers (random logits, one
schema) validated with llguidance; 16 of 20 with xgrammar 0.2.9, which let raw control characters into
strings."""
import json
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import OvphiError
from .json_ebnf import schema_ebnf


@dataclass(frozen=True)
class Grammar:
    """One constraint in two notations: llguidance's Lark for ovphi's own decode loop, and xgrammar's EBNF for the
    genai engines (None where ovphi cannot write it; `no_ebnf` says why)."""

    lark: str
    ebnf: str | None = None
    no_ebnf: str = "it is given only as a Lark grammar"


def json_lark(schema):
    """The Lark rule body for JSON valid against `schema` (a dict), compact as the OpenAI API answers."""
    return "%json " + json.dumps({"x-guidance": {"whitespace_flexible": False}} | schema)


def schema_grammar(schema_text):
    """The Grammar of JSON valid against a JSON schema given as text; an OvphiError saying why there is none."""
    try:
        schema = json.loads(schema_text)
    except ValueError as error:
        raise OvphiError(f"the JSON schema is not JSON: {error}") from None
    if not isinstance(schema, dict):
        raise OvphiError("the JSON schema must be a JSON object")
    grammar = "start: " + json_lark(schema)
    check_grammar(grammar, "the JSON schema")
    return with_ebnf(grammar, lambda: schema_ebnf(schema))


def with_ebnf(lark, write_ebnf):
    """Grammar(lark) with the EBNF write_ebnf() returns, or the reason it gave for writing none."""
    try:
        return Grammar(lark, write_ebnf())
    except OvphiError as error:
        return Grammar(lark, no_ebnf=str(error))


@lru_cache(maxsize=64)  # a grammar is checked where it is made and where a GenerationConfig takes it
def check_grammar(grammar, what="the grammar"):
    """An OvphiError in one line if llguidance cannot compile the Lark grammar."""
    import llguidance

    failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(llguidance.LLMatcher.grammar_from_lark(
        grammar))
    if failed:
        reason = messages[0].splitlines()[0].partition("failed to compile JSON schema: ")
        raise OvphiError(f"{what} cannot be used: {reason[2] or reason[0]}")


@lru_cache(maxsize=4)  # building one takes up to a second
def guidance_tokenizer(tokenizer, vocabulary, stop_ids):
    """llguidance's view of a Hugging Face tokenizer for `vocabulary` logits, ending on any of stop_ids (a
    tuple)."""
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocabulary, eos_token=list(stop_ids))


class Constraint:
    """The state of one answer constrained to a Lark grammar: mask(logits) before each token, advance(token)
    after it."""

    def __init__(self, grammar, tokenizer, vocabulary, stop_ids):
        import llguidance

        self.matcher = llguidance.LLMatcher(guidance_tokenizer(tokenizer, vocabulary, tuple(sorted(stop_ids))),
                                            llguidance.LLMatcher.grammar_from_lark(grammar), log_level=0)
        if self.matcher.is_error():
            raise OvphiError(f"the grammar cannot be used: {self.matcher.get_error()}")

    def mask(self, logits):
        """Set, in place, the (1, vocabulary) logits of tokens the schema does not allow next to -inf."""
        bits = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        allowed = np.unpackbits(bits, bitorder="little")[:logits.shape[-1]].astype(bool)
        logits[..., ~allowed] = float("-inf")  # a torch tensor takes a numpy mask as it is

    def advance(self, token):
        """Take the sampled token; an OvphiError if the schema did not allow it (a bug, never the user's). After
        the answer is complete only stop ids are allowed; more of them (GenerationConfig.ignore_eos) change nothing."""
        if not self.matcher.is_stopped() and not self.matcher.consume_token(token):
            raise OvphiError(f"the constrained answer took a token its schema refuses: {self.matcher.get_error()}")
