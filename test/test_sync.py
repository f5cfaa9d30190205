import threading

import pytest

from sam_ros.sync import ApproximateTimeSynchronizer, LatestSlot

MS = 1_000_000


def collect(num_topics=3, queue=5, slop=0.01):
    out = []
    return ApproximateTimeSynchronizer(num_topics, queue, slop, lambda *m: out.append(m)), out


def test_exact_and_jittered_stamps_match_in_any_arrival_order():
    sync, out = collect()
    for frame in range(5):
        t = frame * 33 * MS
        arrivals = [(2, t + 2 * MS, f"info{frame}"), (0, t, f"rgb{frame}"), (1, t - 3 * MS, f"depth{frame}")]
        for topic, stamp, msg in (arrivals if frame % 2 else arrivals[::-1]):
            sync.add(topic, stamp, msg)
    assert out == [(f"rgb{i}", f"depth{i}", f"info{i}") for i in range(5)]


def test_stamps_that_never_match_emit_nothing_and_stay_bounded():
    sync, out = collect(queue=4)
    for i in range(100):
        sync.add(0, i * 100 * MS, "rgb")
        sync.add(1, i * 100 * MS + 50 * MS, "depth")  # always 50 ms apart: more than the 10 ms slop
        sync.add(2, i * 100 * MS, "info")
    assert out == []
    assert all(len(q) <= 4 for q in sync.queues)
    assert sync.evicted > 0


def test_missing_topic_blocks_until_it_arrives():
    sync, out = collect()
    sync.add(0, 0, "rgb")
    sync.add(1, 0, "depth")
    assert out == []
    sync.add(2, 1 * MS, "info")
    assert out == [("rgb", "depth", "info")]


def test_nearest_candidate_wins_and_older_messages_are_dropped():
    sync, out = collect(num_topics=2, slop=0.02)
    sync.add(1, 0, "depth-old")
    sync.add(1, 10 * MS, "depth-near")
    sync.add(1, 40 * MS, "depth-future")
    sync.add(0, 12 * MS, "rgb")
    assert out == [("rgb", "depth-near")]
    assert list(sync.queues[1]) == [40 * MS]  # the older, unmatched depth is gone


def test_out_of_order_arrival_is_still_matched():
    sync, out = collect(num_topics=2)
    sync.add(0, 100 * MS, "rgb-new")
    sync.add(0, 50 * MS, "rgb-late")
    sync.add(1, 50 * MS, "depth-late")
    assert out == [("rgb-late", "depth-late")]


def test_invalid_construction():
    with pytest.raises(ValueError):
        ApproximateTimeSynchronizer(0, 5, 0.1, print)


def test_latest_slot_replaces_and_counts_drops():
    slot = LatestSlot()
    slot.put(1)
    slot.put(2)
    slot.put(3)
    assert slot.get(timeout=1) == 3 and slot.dropped == 2
    assert slot.get(timeout=0.01) is None


def test_latest_slot_wakes_a_waiting_consumer_and_closes():
    slot, got = LatestSlot(), []
    consumer = threading.Thread(target=lambda: got.append(slot.get(timeout=10)))
    consumer.start()
    slot.put("frame")
    consumer.join(timeout=10)
    assert got == ["frame"]
    waiter = threading.Thread(target=lambda: got.append(slot.get(timeout=10)))
    waiter.start()
    slot.close()
    waiter.join(timeout=10)
    assert not waiter.is_alive() and got[-1] is None
