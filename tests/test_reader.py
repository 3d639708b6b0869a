"""Page bookkeeping (pure logic): which ids a page settled, which are gaps, which a jump."""

from shotgun_events.reader import (
    MAX_GAPS_PER_PAGE,
    NEAR_COMMITTED,
    gaps_and_jumps,
    page_from_events,
    page_from_listing,
)


def ev(event_id, event_type="Shotgun_Shot_Change"):
    return {"id": event_id, "event_type": event_type}


def test_every_id_skipped_inside_a_page_is_a_gap():
    page = page_from_events(10, [ev(11), ev(14), ev(15)], limit=3)
    assert page.through == 15
    assert page.missing == (12, 13)
    assert page.jumped == ()
    assert page.full


def test_a_late_id_just_above_the_previous_head_stays_a_gap_in_a_jump():
    """Id 4 is a transaction still running when the sequence jumped 60,000 ids."""
    jump_end = 4 + 60_000
    page = page_from_events(3, [ev(jump_end + 1), ev(jump_end + 2)], limit=500)
    assert 4 in page.missing
    assert page.jumped == ((4 + NEAR_COMMITTED, jump_end - NEAR_COMMITTED),)
    assert page.missing == (
        *range(4, 4 + NEAR_COMMITTED),
        *range(jump_end - NEAR_COMMITTED + 1, jump_end + 1),
    )
    assert page.through == jump_end + 2


def test_a_type_filtered_page_keeps_the_late_ids_next_to_a_jump_too():
    listing = [2, 3, 100_004]  # ids of any type; only 100,004's row is wanted
    page = page_from_listing(1, listing, [ev(100_004)], limit=500)
    assert page.missing[:NEAR_COMMITTED] == tuple(range(4, 4 + NEAR_COMMITTED))
    assert page.missing[-1] == 100_003
    assert page.jumped == ((4 + NEAR_COMMITTED, 100_003 - NEAR_COMMITTED),)
    assert 2 not in page.missing and 3 not in page.missing  # other types, not gaps


def test_without_a_jump_every_missing_id_is_a_gap_however_many():
    present = [MAX_GAPS_PER_PAGE + 1]  # exactly MAX_GAPS_PER_PAGE missing ids
    gaps, jumped = gaps_and_jumps(0, present)
    assert len(gaps) == MAX_GAPS_PER_PAGE and jumped == ()


def test_ids_next_to_every_committed_event_of_a_jumping_page_stay_gaps():
    present = [10, 70_000, 70_005, 200_000]
    gaps, jumped = gaps_and_jumps(0, present)
    assert jumped == (
        (11 + NEAR_COMMITTED, 69_999 - NEAR_COMMITTED),
        (70_006 + NEAR_COMMITTED, 199_999 - NEAR_COMMITTED),
    )
    assert {1, 9, 11, 69_999, 70_001, 70_004, 70_006, 199_999} <= set(gaps)
    assert 11 + NEAR_COMMITTED not in gaps


def test_gaps_kept_in_a_jump_never_pass_the_limit_nearest_first():
    # 400 runs of 500 missing ids (200,000 in all): no id is far, but the limit holds.
    present = [501 * step for step in range(1, 401)]
    gaps, jumped = gaps_and_jumps(0, present, max_gaps=50_000)
    assert len(gaps) <= 50_000
    assert len(jumped) == 400
    assert {1, 500, 502, 1001} <= set(gaps)  # next to the events on both sides
    first, last = jumped[0]
    assert 1 < first <= last < 500


def test_a_huge_jump_costs_only_the_gaps_kept():
    gaps, jumped = gaps_and_jumps(3, [10**15])
    assert len(gaps) == 2 * NEAR_COMMITTED
    assert jumped == ((4 + NEAR_COMMITTED, 10**15 - 1 - NEAR_COMMITTED),)
