"""Every path of choosing the next token: greedy, repetition penalty, temperature, top-k, top-p, seeds."""
import torch

from ovphi.runtime.config import GenerationConfig
from ovphi.runtime.sampling import Sampler

LOGITS = torch.tensor([[1.0, 3.0, 2.9, 0.5, -1.0]])
HISTORY = torch.tensor([[1]])  # token 1 was said before


def draws(generation, count=200, vocabulary=5):
    sampler = Sampler(generation, vocabulary)
    return [sampler.next_token(HISTORY, LOGITS.clone()) for _ in range(count)]


def test_greedy_takes_the_highest_logit():
    assert set(draws(GenerationConfig(), 5)) == {1}


def test_repetition_penalty_moves_greedy_off_a_repeated_token():
    assert set(draws(GenerationConfig(repetition_penalty=1.5), 5)) == {2}


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
