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


def test_a_full_buffer_refuses_later_events_and_keeps_waiting():
    order = StrictOrder(position=0, limit=3)
    order.add_batch([ev(2), ev(3), ev(4), ev(5)], through=5, missing=[1], deadline=99)
    assert order.full and order.newly_full
    assert sorted(order.pending) == [2, 3, 4] and order.through == 4  # 5 is read again
    assert drain(order, now=50) == []
    assert order.blocked_on() == 1
    order.add_batch([ev(6), ev(7)], through=7, missing=[], deadline=99)  # the engine's next page
    assert sorted(order.pending) == [2, 3, 4] and order.through == 4
    order.add_late([ev(1)])
    assert drain(order) == [(DELIVER, 1), (DELIVER, 2), (DELIVER, 3), (DELIVER, 4)]
    assert not order.full
    # the caller reads on from the position (4): what was refused comes again, in order
    order.add_batch([ev(5), ev(6), ev(7)], through=7, missing=[], deadline=99)
    assert drain(order) == [(DELIVER, 5), (DELIVER, 6), (DELIVER, 7)]


def test_a_full_buffer_holds_at_most_its_limit_however_many_pages_come():
    order = StrictOrder(position=0, limit=50)
    next_id = 2
    for _ in range(100):
        page = [ev(event_id) for event_id in range(next_id, next_id + 20)]
        next_id += 20
        order.add_batch(page, through=next_id - 1, missing=[1], deadline=99)
        assert len(order.pending) <= 50 + 20  # the limit, and the page in hand
        assert drain(order) == []
    assert len(order.pending) == 50 and order.through == 51


def test_only_the_events_behind_a_missing_id_count_towards_the_limit():
    order = StrictOrder(position=0, limit=2)
    order.add_batch([ev(1), ev(2), ev(4), ev(5), ev(6)], through=6, missing=[3], deadline=99)
    assert order.through == 5
    assert drain(order) == [(DELIVER, 1), (DELIVER, 2)]
    order.expire([3])  # its deadline passed: the held events go out, then reading goes on
    assert drain(order) == [(DELIVER, 4), (DELIVER, 5)]
    assert not order.full and order.position == 5


def test_waits_among_the_refused_events_are_forgotten_those_below_are_kept():
    order = StrictOrder(position=0, limit=2)
    order.add_batch([ev(2), ev(3), ev(5), ev(6), ev(8)], through=8, missing=[1, 4, 7], deadline=9)
    assert sorted(order.waiting) == [1, 4] and order.through == 4
    order.add_late([ev(1)])
    assert drain(order) == [(DELIVER, 1), (DELIVER, 2), (DELIVER, 3)]
    assert order.full  # 4 is still missing, and the reading stops below it
    order.add_late([ev(4)])
    assert drain(order) == [(DELIVER, 4)]
    assert not order.full


def test_a_wait_that_times_out_while_full_releases_the_held_events():
    order = StrictOrder(position=0, limit=2)
    order.add_batch([ev(2), ev(3), ev(4)], through=4, missing=[1], deadline=5)
    assert drain(order, now=4) == []
    assert drain(order, now=5) == [(DELIVER, 2), (DELIVER, 3)]
    assert not order.full and order.position == 3


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
