"""The delivered runs answer what zevvy has around a gap, like the full list.

``Delivered`` keeps only each run's first and last reading; for any quarter
hour zevvy does not have, the readings just before and after it must be the
same as in the full list of delivered readings (checked on seeded random
orders of delivery, the way backfills, gap fill and typed readings arrive).
"""

from __future__ import annotations

import random

import pytest

from custom_components.zevvy.outbox.format import MAX_DELIVERED_RUNS, Delivered

QUARTER = 900


def _brute(
    sent: dict[int, float], when: int
) -> tuple[tuple[int, float] | None, tuple[int, float] | None]:
    earlier = [t for t in sent if t < when]
    later = [t for t in sent if t > when]
    before = max(earlier) if earlier else None
    after = min(later) if later else None
    return (
        None if before is None else (before, sent[before]),
        None if after is None else (after, sent[after]),
    )


@pytest.mark.parametrize("seed", range(40))
def test_runs_answer_like_the_full_list(seed: int) -> None:
    """Every quarter hour not delivered: the same neighbours as the full list."""
    rng = random.Random(seed)  # noqa: S311
    span = rng.choice((20, 80, 300))
    order = list(range(span))
    rng.shuffle(order)
    # Mostly in order with some holes, as live ticks and backfills arrive.
    if rng.random() < 0.5:
        order.sort()
    order = order[: rng.randrange(1, span + 1)]
    delivered = Delivered()
    sent: dict[int, float] = {}
    for index in order:
        when = 1_700_000_100 + index * QUARTER
        value = 1000.0 + index
        delivered.add(when, value, 1)
        sent[when] = value
        probe = 1_700_000_100 + rng.randrange(-2, span + 2) * QUARTER
        before, after = delivered.neighbours(probe)
        want_before, want_after = _brute(sent, probe)
        if probe not in sent:
            assert (before and before[:2]) == want_before
            assert (after and after[:2]) == want_after
        else:
            # zevvy has it: some delivered reading before and after it, if any.
            assert (before is None) == (want_before is None)
            assert (after is None) == (want_after is None)
            assert before is None or sent.get(before[0]) == before[1] < sent[probe]
            assert after is None or sent.get(after[0]) == after[1] > sent[probe]
    runs = Delivered.from_json(delivered.to_json())
    assert runs.firsts == delivered.firsts
    assert runs.lasts == delivered.lasts


def test_a_delivered_quarter_hour_inside_a_run() -> None:
    """A quarter hour zevvy has: compared with its run's first and last."""
    delivered = Delivered()
    for index in range(10):
        delivered.add(index * QUARTER, float(index), 1)
    assert len(delivered) == 1
    before, after = delivered.neighbours(4 * QUARTER)
    assert before == (0, 0.0, 1)
    assert after == (9 * QUARTER, 9.0, 1)


def test_the_oldest_gaps_are_forgotten() -> None:
    """At most MAX_DELIVERED_RUNS runs: the newest gaps stay known."""
    delivered = Delivered()
    for index in range(MAX_DELIVERED_RUNS + 20):
        delivered.add(index * 2 * QUARTER, float(index), 1)
    assert len(delivered) == MAX_DELIVERED_RUNS
    newest_gap = (2 * (MAX_DELIVERED_RUNS + 19) - 1) * QUARTER
    before, after = delivered.neighbours(newest_gap)
    assert before is not None
    assert after is not None
    assert (before[1], after[1]) == (MAX_DELIVERED_RUNS + 18, MAX_DELIVERED_RUNS + 19)
    assert delivered.neighbours(QUARTER)[0] is None


def test_stored_runs_of_another_shape_are_ignored() -> None:
    """Runs whose two lists do not match are not trusted (none kept)."""
    data = {"first": {"t": [0, 1800], "v": [1.0, 2.0]}, "last": {"t": [0], "v": [1]}}
    assert len(Delivered.from_json(data)) == 0
    assert len(Delivered.from_json(None)) == 0
