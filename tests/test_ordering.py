"""Strict ordering's reorder buffer (pure logic)."""

from shotgun_events.ordering import ADVANCE, DELIVER, StrictOrder


def ev(event_id):
    return {"id": event_id}


def drain(order, now=0.0):
    steps = []
    while True:
        step = order.next_step(now)
        if step is None:
            return steps
        kind, value = step
        steps.append((kind, value["id"] if kind == DELIVER else value))


def test_events_flow_in_order_when_nothing_is_missing():
    order = StrictOrder(position=10, limit=100)
    order.add_batch([ev(11), ev(13)], through=14, missing=[], deadline=5)
    assert drain(order) == [(DELIVER, 11), (DELIVER, 13), (ADVANCE, 14)]
    assert order.position == 14


def test_later_events_wait_for_a_missing_id_then_follow_it():
    order = StrictOrder(position=10, limit=100)
    order.add_batch([ev(11), ev(13), ev(14)], through=14, missing=[12], deadline=5)
    assert drain(order) == [(DELIVER, 11)]
    assert order.blocked_on() == 12
    order.add_late([ev(12)])
    assert drain(order) == [(DELIVER, 12), (DELIVER, 13), (DELIVER, 14)]


def test_a_missing_id_that_times_out_releases_the_events_behind_it():
    order = StrictOrder(position=10, limit=100)
    order.add_batch([ev(13)], through=13, missing=[11, 12], deadline=5)
    assert drain(order, now=1) == []
    assert drain(order, now=6) == [(DELIVER, 13)]


def test_expired_gaps_from_the_engine_release_too():
    order = StrictOrder(position=10, limit=100)
    order.add_batch([ev(12)], through=12, missing=[11], deadline=99)
    assert drain(order) == []
    order.expire([11])
    assert drain(order) == [(DELIVER, 12)]


def test_position_moves_up_to_just_below_the_missing_id():
    order = StrictOrder(position=10, limit=100)
    order.add_batch([], through=20, missing=[15], deadline=99)
    assert drain(order) == [(ADVANCE, 14)]
    order.add_late([ev(15)])
    assert drain(order) == [(DELIVER, 15), (ADVANCE, 20)]


def test_ids_never_go_backwards_even_when_a_late_event_is_below_the_position():
    order = StrictOrder(position=10, limit=100)
    order.add_late([ev(5)])
    order.add_batch([ev(9), ev(11)], through=11, missing=[], deadline=1)
    assert drain(order) == [(DELIVER, 11)]


def test_a_full_buffer_gives_up_the_oldest_wait():
    order = StrictOrder(position=0, limit=3)
    order.add_batch([ev(2), ev(3), ev(4), ev(5)], through=5, missing=[1], deadline=99)
    assert order.forced == [1]
    assert drain(order) == [(DELIVER, 2), (DELIVER, 3), (DELIVER, 4), (DELIVER, 5)]


def test_a_full_buffer_gives_up_only_the_wait_that_holds_too_much_back():
    order = StrictOrder(position=0, limit=3)
    order.add_batch([ev(2), ev(3)], through=3, missing=[1], deadline=99)
    assert drain(order) == []
    order.add_batch([ev(4), ev(6)], through=6, missing=[5], deadline=99)
    assert order.forced == [1]  # without 1, only 6 is held back (behind 5): under the limit
    assert drain(order) == [(DELIVER, 2), (DELIVER, 3), (DELIVER, 4)]
    order.add_late([ev(5)])
    assert drain(order) == [(DELIVER, 5), (DELIVER, 6)]


def test_without_a_clock_waits_end_only_by_arrival_or_expiry():
    order = StrictOrder(position=10, limit=100)
    order.add_batch([ev(12)], through=12, missing=[11], deadline=5)
    assert order.overdue(now=6) == [11]
    assert drain(order, now=None) == []  # the caller asks the site before giving it up
    order.expire([11])
    assert drain(order, now=None) == [(DELIVER, 12)]


def test_a_missing_id_read_again_after_it_arrived_is_delivered_once_and_blocks_nothing():
    order = StrictOrder(position=10, limit=100)
    order.add_batch([ev(11), ev(13)], through=13, missing=[12], deadline=99)
    assert drain(order) == [(DELIVER, 11)]
    # a re-read from the position (after a reload) finds 12 committed meanwhile
    order.add_batch([ev(12), ev(13), ev(14)], through=14, missing=[], deadline=99)
    assert drain(order) == [(DELIVER, 12), (DELIVER, 13), (DELIVER, 14)]
    order.add_late([ev(12)])  # the engine's late-events message for 12 comes after
    assert drain(order) == []
    assert order.blocked_on() is None
