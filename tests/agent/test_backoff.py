"""The core draws through `CoreRng`, and wrapping changes no draw."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from iotdr.agent.core.backoff import backoff_delay, core_rng
from iotdr.agent.core.settings import BackoffSettings


@given(st.integers(0, 2**64), st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))))
def test_a_wrapped_random_draws_what_random_draws(
    seed: int, bounds: list[tuple[float, float]]
) -> None:
    plain, wrapped = random.Random(seed), core_rng(random.Random(seed))
    assert [wrapped.uniform(a, b) for a, b in bounds] == [plain.uniform(a, b) for a, b in bounds]


def test_backoff_draws_the_same_either_way() -> None:
    settings = BackoffSettings()
    plain, wrapped = random.Random(3), core_rng(random.Random(3))
    for rounds in range(12):
        nominal = min(
            settings.max_s, settings.initial_s * settings.multiplier ** max(rounds - 1, 0)
        )
        expected = 0.0 if rounds < 1 else nominal / 2 + plain.uniform(0.0, nominal / 2)
        assert backoff_delay(settings, rounds, wrapped) == expected
