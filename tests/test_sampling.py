"""Every path of choosing the next token: greedy, repetition penalty, temperature, top-k, top-p, seeds, ids with no
token, logit_bias, presence and frequency penalties; the log probabilities reported."""
import pytest
import torch
from tokenizers import AddedToken

from ovphi.errors import OvphiError
from ovphi.runtime.config import GenerationConfig
from ovphi.runtime.sampling import Sampler, token_logprob

LOGITS = torch.tensor([[1.0, 3.0, 2.9, 0.5, -1.0]])
HISTORY = torch.tensor([[1]])  # token 1 was said before


def draws(generation, count=200, vocabulary=5):
    """`count` tokens drawn after HISTORY from the same logits, each appended to the history as the decode loop
    does."""
    sampler, history, drawn = Sampler(generation, vocabulary), HISTORY, []
    for _ in range(count):
        drawn.append(sampler.next_token(history, LOGITS.clone()))
        history = torch.cat([history, torch.tensor([drawn[-1:]])], dim=1)
    return drawn


def test_greedy_takes_the_highest_logit():
    assert set(draws(GenerationConfig(), 5)) == {1}


def test_repetition_penalty_moves_greedy_off_a_repeated_token():
    # 3.0 / 1.5 < 2.9 for token 1, said before; then both were said, and 3.0 / 1.5 > 2.9 / 1.5
    assert draws(GenerationConfig(repetition_penalty=1.5), 5) == [2, 1, 1, 1, 1]


def test_sampling_is_seeded_and_follows_the_distribution():
    first = draws(GenerationConfig(temperature=1.0, seed=7))
    assert first == draws(GenerationConfig(temperature=1.0, seed=7))  # same seed, same draws
    assert first != draws(GenerationConfig(temperature=1.0, seed=8))
    assert {1, 2} <= set(first) and first.count(1) > first.count(0)


def test_low_temperature_top_k_and_top_p_narrow_the_choice():
    assert set(draws(GenerationConfig(temperature=0.01, seed=1))) == {1}
    assert set(draws(GenerationConfig(temperature=1.0, top_k=2, seed=1))) == {1, 2}
    assert set(draws(GenerationConfig(temperature=1.0, top_k=1, seed=1))) == {1}
    assert set(draws(GenerationConfig(temperature=1.0, top_p=0.3, seed=1))) == {1}
    assert set(draws(GenerationConfig(temperature=5.0, seed=1))) == {0, 1, 2, 3, 4}


def test_ids_past_the_tokenizers_vocabulary_are_never_chosen():
    assert set(draws(GenerationConfig(), 5, vocabulary=1)) == {0}  # the model has more logits than tokens
    assert set(draws(GenerationConfig(temperature=2.0, seed=1), vocabulary=3)) <= {0, 1, 2}


def test_logit_bias_shifts_a_token_and_must_name_one_the_tokenizer_has():
    assert set(draws(GenerationConfig(logit_bias={4: 10}), 5)) == {4}
    assert set(draws(GenerationConfig(temperature=1.0, seed=3, logit_bias={1: -100, 2: -100}))) <= {0, 3, 4}
    with pytest.raises(OvphiError, match="logit_bias names token 7"):
        Sampler(GenerationConfig(logit_bias={7: 1}), 5)


def test_frequency_penalty_grows_with_each_use_and_presence_penalty_does_not():
    # greedy over 3.0 (token 1) and 2.9 (token 2): a penalty on what was said moves between them
    assert draws(GenerationConfig(frequency_penalty=0.5), 5) == [1, 2, 1, 2, 1]
    assert draws(GenerationConfig(presence_penalty=0.2), 5) == [1, 2, 1, 1, 1]
    assert draws(GenerationConfig(frequency_penalty=-1.0), 3) == [1, 1, 1]


@pytest.mark.parametrize("change, says", [({"presence_penalty": 3}, "presence_penalty must be -2 to 2"),
                                          ({"logit_bias": {-1: 1}}, "logit_bias maps"),
                                          ({"logit_bias": {1: 200}}, "logit_bias maps")])
def test_penalties_and_biases_out_of_range_are_refused(change, says):
    with pytest.raises(OvphiError, match=says):
        GenerationConfig(**change)


class Pieces:
    """What token_logprob reads of a tokenizer, over five SentencePiece pieces, two of them special."""

    pieces = ("<unk>", "\u2581the", "<0x7B>", "<0xC3>", "<|end|>")

    @property
    def added_tokens_decoder(self):
        return {0: AddedToken("<unk>", special=True), 4: AddedToken("<|end|>", special=True)}

    def __len__(self):
        return len(self.pieces)

    def convert_ids_to_tokens(self, token_id):
        return self.pieces[token_id]


def test_token_logprob_is_the_models_distribution_over_the_tokens_with_the_most_likely_first():
    logits = torch.cat([LOGITS, torch.tensor([[9.0, 9.0]])], dim=1)  # two ids past the tokenizer's five
    entry = token_logprob(logits, 2, Pieces(), top=3)
    expected = torch.log_softmax(LOGITS[0], -1)
    assert entry.token_id == 2 and entry.bytes == b"{" and entry.logprob == pytest.approx(float(expected[2]))
    assert [other.token_id for other in entry.top] == [1, 2, 0]
    assert [(other.text, other.bytes) for other in entry.top] == [(" the", b" the"), ("{", b"{"), ("<unk>", None)]
    assert [other.logprob for other in entry.top] == pytest.approx([float(expected[i]) for i in (1, 2, 0)])
    alone = token_logprob(logits, 3, Pieces(), top=0)
    assert alone.top == () and (alone.text, alone.bytes) == ("\\xc3", b"\xc3")  # a character's first byte


def test_a_callers_logits_processor_sees_the_bias_applied_and_the_growing_history():
    seen = []

    def favour_three(history, logits):
        seen.append((history.shape[1], float(logits[0, 4])))
        logits[0, 3] += 10
        return logits

    assert draws(GenerationConfig(logits_processors=[favour_three], logit_bias={4: 5}), 3) == [3, 3, 3]
    assert seen == [(1, 4.0), (2, 4.0), (3, 4.0)]  # -1 + 5: after logit_bias; one more token each time
    with pytest.raises(OvphiError, match="callables"):
        GenerationConfig(logits_processors=[3])
