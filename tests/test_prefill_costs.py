"""Whether a valid KV prefix is kept or recomputed, and the prefill ETA, from what the engine measured of itself
(prefill_costs.py), with the full-size Xeon's numbers only as the prior."""
import pytest

from ovphi.runtime.optimum_engine import OpenVINOModel
from ovphi.runtime.prefill_costs import PrefillCosts


def xeon_like(scale=1.0):
    """Costs that timed an 800-token prefill from empty and 22 tokens after 800 cached ones (as OpenVINO's stateful
    SDPA on the 2-core Xeon: 16 s and 1.67 s), on a machine `scale` times slower."""
    costs = PrefillCosts(OpenVINOModel.cached_prefill_ratio)
    costs.record(800, 0, 16.0 * scale)
    costs.record(22, 800, 1.67 * scale)
    return costs


def test_before_any_measurement_the_prior_decides_and_no_eta_is_claimed():
    costs = PrefillCosts(OpenVINOModel.cached_prefill_ratio)
    assert not costs.measured
    assert not costs.from_scratch_is_cheaper(806, 22)  # a second turn
    assert not costs.from_scratch_is_cheaper(760, 13)  # a new question about a picture in the prefix cache
    assert costs.from_scratch_is_cheaper(2, 769)  # a server's next client: only "<|user|>\n" in common
    assert not PrefillCosts(0.0).from_scratch_is_cheaper(2, 769)  # PyTorch's attention has no such cost


def test_measured_speeds_predict_the_prefills_they_came_from():
    costs = xeon_like()
    assert costs.measured and costs.per_token_s == pytest.approx(0.02)
    assert costs.cached_cost == pytest.approx((1.67 - 22 * 0.02) / (22 * 822))
    assert costs.seconds(22, 800) == pytest.approx(1.67) and costs.seconds(800, 0) == pytest.approx(16.0)
    assert costs.from_scratch_is_cheaper(2, 769) and not costs.from_scratch_is_cheaper(806, 22)


def test_the_decisions_follow_the_measured_ratio_not_the_machines_speed():
    slow, fast = xeon_like(10.0), xeon_like(0.1)
    for cached, new in ((806, 22), (760, 13), (2, 769), (300, 300), (40, 700)):
        assert slow.from_scratch_is_cheaper(cached, new) == fast.from_scratch_is_cheaper(cached, new)
    assert slow.seconds(22, 800) == pytest.approx(16.7) and fast.seconds(22, 800) == pytest.approx(0.167)


def test_an_engine_whose_cached_prefill_costs_nothing_extra_always_keeps_its_prefix():
    costs = PrefillCosts(OpenVINOModel.cached_prefill_ratio)
    costs.record(800, 0, 16.0)
    costs.record(22, 800, 22 * 0.02)  # no slower per token than from empty
    assert costs.cached_cost == 0.0 and not costs.from_scratch_is_cheaper(2, 769)


def test_short_prefills_and_decode_steps_do_not_move_the_estimates():
    costs = PrefillCosts(OpenVINOModel.cached_prefill_ratio)
    costs.record(8, 0, 30.0)  # e.g. the warm-up's first inference, which repacks the weights
    costs.record(1, 800, 5.0)  # a decode step runs another kernel
    assert not costs.measured and costs.measured_cost is None
    measured = xeon_like()
    measured.record(1, 900, 5.0)
    assert measured.cached_cost == xeon_like().cached_cost
