"""Answers constrained to a JSON schema: with random logits over the tiny tokenizer (whose `{`, `-` and
control characters are byte-fallback tokens) only the constraint can make them valid."""
import json
import re

import jsonschema
import pytest
import torch
from pydantic import BaseModel, Field
from transformers import AutoTokenizer

from ovphi.errors import OvphiError
from ovphi.runtime.config import GenerationConfig
from ovphi.runtime.constraint import Constraint, schema_grammar
from ovphi.runtime.json_ebnf import integer_range, schema_ebnf
from ovphi.runtime.sampling import Sampler

PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"},
                         "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "maxLength": 6}},
                         "mood": {"enum": ["calm", "cross"]}}}


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    return AutoTokenizer.from_pretrained(tiny_dir)


def constrained_answer(tokenizer, schema, seed, vocabulary=1088):
    """Tokens sampled from random logits (more logits than tokens, as in the real model) until a stop id."""
    stop = {tokenizer.convert_tokens_to_ids("<|end|>")}
    constraint = Constraint(schema_grammar(json.dumps(schema)).lark, tokenizer, vocabulary, stop)
    sampler = Sampler(GenerationConfig(temperature=1.0, seed=seed), len(tokenizer), constraint)
    logits = torch.Generator().manual_seed(seed)
    answer = []
    for _ in range(200):
        token = sampler.next_token(torch.tensor([[0, *answer]]), torch.randn(1, vocabulary, generator=logits) * 3)
        if token in stop:
            return tokenizer.decode(answer)
        answer.append(token)
    raise AssertionError(f"no end after 200 tokens: {tokenizer.decode(answer)!r}")


def test_sampled_answers_from_random_logits_all_validate_against_the_schema(tokenizer):
    answers = [constrained_answer(tokenizer, PERSON, seed) for seed in range(20)]
    for answer in answers:
        jsonschema.validate(json.loads(answer), PERSON)
    assert len(set(answers)) == 20  # sampled, not one forced answer


def test_an_object_schema_gives_compact_json(tokenizer):
    answer = constrained_answer(tokenizer, {"type": "object", "properties": {"n": {"type": "integer"}},
                                            "required": ["n"], "additionalProperties": False}, 3)
    assert answer == json.dumps(json.loads(answer), separators=(",", ":"))


@pytest.mark.parametrize("schema, says", [("{", "not JSON"), ("[1]", "must be a JSON object"),
                                          ('{"type": "frobnicate"}', "cannot be used")])
def test_a_schema_that_cannot_be_compiled_is_refused_with_one_line(schema, says):
    with pytest.raises(OvphiError, match=says) as error:
        schema_grammar(schema)
    assert "\n" not in str(error.value)


def test_a_grammar_that_cannot_be_compiled_is_refused_before_any_model_runs():
    with pytest.raises(OvphiError, match="the grammar cannot be used") as error:
        GenerationConfig(grammar="start: ((")
    assert "\n" not in str(error.value)


def ebnf_regex(expression):
    """A Python regex for the EBNF json_ebnf writes for integers (literals, classes, counts, groups, |)."""
    return re.sub(r'"(.)"', lambda match: re.escape(match.group(1)), expression).replace(" ", "")


@pytest.mark.parametrize("low, high", [(1, 3), (-15, 127), (7, None), (None, -3), (0, 0), (-200, -19), (95, 1003),
                                       (None, None)])
def test_an_integer_range_in_ebnf_matches_exactly_the_integers_in_it(low, high):
    pattern = re.compile(ebnf_regex(integer_range(low, high)))
    for number in range(-1200, 1200):
        inside = (low is None or number >= low) and (high is None or number <= high)
        assert bool(pattern.fullmatch(str(number))) == inside, number
    assert not pattern.fullmatch("007") and not pattern.fullmatch("-0")


@pytest.mark.parametrize("schema, says", [
    ({"type": "string", "pattern": "^a$"}, "the schema keyword 'pattern' has no EBNF in ovphi"),
    ({"type": "number", "minimum": 0}, "a number's 'minimum' has no EBNF in ovphi"),
    ({"allOf": [{"type": "string"}, {"maxLength": 3}]}, "an 'allOf' of more than one schema"),
    ({"$ref": "https://example.com/s.json"}, "only local $refs"),
    ({"type": "integer", "minimum": 5, "maximum": 2}, "no integer lies between 5 and 2")])
def test_what_ovphi_cannot_write_as_ebnf_is_named(schema, says):
    grammar = schema_grammar(json.dumps(schema)) if "pattern" in schema else None
    if grammar:  # llguidance takes it: the optimum engine constrains, the genai engines say why they cannot
        assert grammar.ebnf is None and says in grammar.no_ebnf
    with pytest.raises(OvphiError, match=re.escape(says)):
        schema_ebnf(schema)


def test_a_pydantic_schema_with_refs_and_optional_fields_becomes_ebnf():
    class Part(BaseModel):
        name: str = Field(max_length=5)

    class Order(BaseModel):
        parts: list[Part] = Field(max_length=2)
        rush: bool | None = None

    grammar = schema_ebnf(Order.model_json_schema())
    assert grammar.startswith("root ::= ") and '"\\"parts\\"" ":"' in grammar and "char{0,5}" in grammar


def test_the_detokenizer_prints_what_it_printed_before_its_vocabulary_became_token_bytes(int4_ir):
    import numpy as np
    import openvino as ov
    import openvino_tokenizers

    _, exported = openvino_tokenizers.convert_tokenizer(AutoTokenizer.from_pretrained(int4_ir), with_detokenizer=True)
    before = ov.Core().compile_model(exported, "CPU")
    after = ov.Core().compile_model(int4_ir / "openvino_detokenizer.xml", "CPU")
    assert json.loads((int4_ir / "ovphi_manifest.json").read_text())["detokenizer"] == "token bytes"
    numbers = np.random.default_rng(0)
    vocabulary = len(AutoTokenizer.from_pretrained(int4_ir))
    batches = [[[token] for token in range(vocabulary)]] + [numbers.integers(0, vocabulary, (8, 24)) for _ in range(50)]
    for ids in batches:
        assert list(before(np.array(ids))[0]) == list(after(np.array(ids))[0])
