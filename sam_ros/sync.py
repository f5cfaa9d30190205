"""Message synchronisation and hand-off, without ROS (message_filters is not installable from PyPI).

``ApproximateTimeSynchronizer`` follows message_filters' Python ApproximateTimeSynchronizer: each
topic keeps at most ``queue_size`` messages; when one arrives, the candidates of every other topic
within ``slop`` of it are tried nearest first, and the first set whose stamps all lie within
``slop`` is emitted. Unlike message_filters, messages older than an emitted set are dropped too: a
robot wants the newest frame, never an older one after a newer one. ``LatestSlot`` hands the newest
frame to the inference thread; a frame waiting there is replaced (and counted) rather than queued.
"""
from __future__ import annotations

import itertools
import threading
from typing import Any, Callable, Sequence


class ApproximateTimeSynchronizer:
    def __init__(self, num_topics: int, queue_size: int, slop_s: float,
                 callback: Callable[..., None]) -> None:
        if num_topics < 1 or queue_size < 1 or slop_s < 0:
            raise ValueError("need num_topics >= 1, queue_size >= 1 and slop >= 0")
        self.queues: list[dict[int, Any]] = [{} for _ in range(num_topics)]
        self.queue_size = queue_size
        self.slop_ns = int(round(slop_s * 1e9))
        self.callback = callback
        self.evicted = 0  # messages that left a full queue unmatched
        self._lock = threading.Lock()

    def add(self, topic: int, stamp_ns: int, msg: Any) -> None:
        """Offer one message; the callback runs (in this thread) with one message per topic on a match."""
        with self._lock:
            matched = self._add(topic, int(stamp_ns), msg)
        if matched is not None:
            self.callback(*matched)

    def _add(self, topic: int, stamp: int, msg: Any) -> Sequence[Any] | None:
        queue = self.queues[topic]
        queue[stamp] = msg
        while len(queue) > self.queue_size:
            del queue[min(queue)]
            self.evicted += 1
        candidates = []
        for index, other in enumerate(self.queues):
            if index == topic:
                candidates.append([stamp])
                continue
            near = sorted((s for s in other if abs(s - stamp) <= self.slop_ns), key=lambda s: abs(s - stamp))
            if not near:
                return None
            candidates.append(near)
        for stamps in itertools.product(*candidates):
            if max(stamps) - min(stamps) <= self.slop_ns:
                matched = [q.pop(s) for q, s in zip(self.queues, stamps)]
                for q, s in zip(self.queues, stamps):
                    for old in [t for t in q if t < s]:
                        del q[old]
                return matched
        return None


class LatestSlot:
    """A one-item hand-off between threads: ``put`` replaces what is waiting, ``get`` takes it."""

    def __init__(self) -> None:
        self._item: Any = None
        self._has_item = False
        self._closed = False
        self._condition = threading.Condition()
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._condition:
            if self._has_item:
                self.dropped += 1
            self._item, self._has_item = item, True
            self._condition.notify()

    def get(self, timeout: float | None = None) -> Any:
        """The newest item, or None on timeout or after ``close``."""
        with self._condition:
            self._condition.wait_for(lambda: self._has_item or self._closed, timeout)
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
