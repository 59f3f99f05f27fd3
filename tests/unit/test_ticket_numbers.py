"""A lock's candidate ticket numbers: seven digits, each uniform over 1,000,000–9,999,999 and independent of the
others, though drawn from the CSPRNG at once."""
from cardstore.repository import NUMBER_CANDIDATES, _candidates

DRAWS = 30_000  # × NUMBER_CANDIDATES numbers; bounds below are many standard deviations wide: no flaky failures


def test_candidates_are_seven_digit_numbers_one_per_slot():
    for _ in range(1000):
        found = _candidates()
        assert sorted(found) == [f"n{i}" for i in range(NUMBER_CANDIDATES)]
        assert all(1_000_000 <= n <= 9_999_999 for n in found.values())


def test_each_slot_is_uniform_over_the_range():
    for slot in range(NUMBER_CANDIDATES):
        buckets = [0] * 9  # by leading digit 1 … 9: 1/9 of the range each
        for _ in range(DRAWS):
            buckets[_candidates()[f"n{slot}"] // 1_000_000 - 1] += 1
        expected = DRAWS / 9
        assert all(abs(b - expected) < 0.1 * expected for b in buckets), (slot, buckets)


def test_the_slots_are_independent():
    """The low digits of one slot say nothing about the next (the draw is split, not reused)."""
    pairs = [(c["n0"] % 10, c["n1"] % 10) for c in (_candidates() for _ in range(DRAWS))]
    same = sum(a == b for a, b in pairs)
    assert abs(same - DRAWS / 10) < 0.15 * DRAWS / 10
    assert len({c["n0"] for c in (_candidates() for _ in range(1000))}) > 990  # no repeats to speak of
