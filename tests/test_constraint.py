"""Answers constrained to a JSON schema: with random logits over the tiny tokenizer (whose `{`, `-` and
control characters are byte-fallback tokens) only the constraint can make them valid."""
import json

import jsonschema
import pytest
import torch
from transformers import AutoTokenizer

from ovphi.errors import OvphiError
from ovphi.runtime.config import GenerationConfig
from ovphi.runtime.constraint import Constraint, schema_grammar
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
    constraint = Constraint(schema_grammar(json.dumps(schema)), tokenizer, vocabulary, stop)
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
