"""Node health over a sliding time window, without ROS.

Cumulative counters say what happened since start; a robot's operator needs what is happening now.
``FrameStats`` keeps the times of recent events (frames received, processed, dropped, rejected,
failed) and the latency of recent frames, and ``health`` turns a window of them into a level and a
one-line message. Both are evaluated at read time, so a diagnostics timer reports a stopped input
as "no input for N s" and FPS 0, instead of the last value computed when a frame went through.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

OK, WARN, ERROR = 0, 1, 2  # the levels of diagnostic_msgs/DiagnosticStatus

EVENTS = ("received", "matched", "processed", "dropped", "rejected", "errors")


@dataclass(frozen=True)
class WindowSummary:
    """What the last ``window_s`` seconds looked like."""

    window_s: float
    fps: float                       # processed frames per second
    counts: dict[str, int]           # events of each kind within the window
    latency_p50_ms: float | None     # end-to-end processing time of the window's frames
    latency_p95_ms: float | None
    latency_max_ms: float | None
    since_input_s: float | None      # seconds since any input message; None = never had one
    totals: dict[str, int] = field(default_factory=dict)  # cumulative counts since start


class FrameStats:
    """Thread-safe event log trimmed to a time window; ``clock`` is injectable for tests."""

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        if not window_s > 0:
            raise ValueError(f"window must be > 0 s, got {window_s}")
        self.window_s = window_s
        self.clock = clock
        self.started = clock()
        self._events: dict[str, deque[float]] = {kind: deque() for kind in EVENTS}
        self._latencies: deque[tuple[float, float]] = deque()
        self._totals = dict.fromkeys(EVENTS, 0)
        self._lock = threading.Lock()
        self._last_input: float | None = None

    def record(self, kind: str, count: int = 1) -> None:
        """``count`` events of ``kind`` (one of EVENTS) now."""
        if kind not in self._events:
            raise ValueError(f"unknown event {kind!r}; one of {', '.join(EVENTS)}")
        now = self.clock()
        with self._lock:
            self._events[kind].extend([now] * count)
            self._totals[kind] += count
            if kind == "received":
                self._last_input = now
            self._trim(now)

    def record_latency(self, milliseconds: float) -> None:
        """A processed frame and how long it took end to end."""
        now = self.clock()
        with self._lock:
            self._events["processed"].append(now)
            self._totals["processed"] += 1
            self._latencies.append((now, float(milliseconds)))
            self._trim(now)

    def summary(self) -> WindowSummary:
        now = self.clock()
        with self._lock:
            self._trim(now)
            counts = {kind: len(times) for kind, times in self._events.items()}
            processed = list(self._events["processed"])
            latencies = sorted(ms for _, ms in self._latencies)
            since_input = None if self._last_input is None else now - self._last_input
            totals = dict(self._totals)
        observed = min(self.window_s, now - self.started)
        return WindowSummary(self.window_s, _rate(processed, now, observed), counts, _percentile(latencies, 50),
                             _percentile(latencies, 95), latencies[-1] if latencies else None, since_input, totals)

    def _trim(self, now: float) -> None:
        oldest = now - self.window_s
        for times in self._events.values():
            while times and times[0] <= oldest:
                times.popleft()
        while self._latencies and self._latencies[0][0] <= oldest:
            self._latencies.popleft()


def _rate(times: list[float], now: float, observed_s: float) -> float:
    """Events per second in the window.

    While events keep coming, the mean interval between the window's events (no error from where the
    window happens to cut them); once the last event is more than two mean intervals old, the count
    over the window, which falls to 0 when the window holds none.
    """
    if len(times) >= 2:
        interval = (times[-1] - times[0]) / (len(times) - 1)
        if interval > 0 and now - times[-1] <= 2 * interval:
            return 1.0 / interval
    return len(times) / observed_s if observed_s > 0 else 0.0


def _percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (a value that occurred), None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def health(summary: WindowSummary, no_input_after_s: float) -> tuple[int, str]:
    """Level and message from the recent window alone: old trouble no longer colours the status."""
    counts, window = summary.counts, f"{summary.window_s:g} s"
    level, problems = OK, []
    if summary.since_input_s is None or summary.since_input_s > no_input_after_s:
        level = WARN
        problems.append("no input yet" if summary.since_input_s is None else
                        f"no input for {summary.since_input_s:.0f} s")
    elif counts["received"] and not counts["matched"] and summary.totals["received"] > counts["received"]:
        level = WARN  # inputs arrive, but not one complete colour + depth + camera_info set for a whole window
        problems.append(f"no colour/depth/camera_info set matched in the last {window} (a topic missing, or "
                        "stamps further apart than sync_slop)")
    if counts["rejected"]:
        level = max(level, WARN)
        problems.append(f"{counts['rejected']} frame(s) rejected in the last {window}")
    if counts["errors"]:
        level = ERROR
        problems.append(f"{counts['errors']} frame(s) failed in the last {window}")
    return level, "; ".join(problems) if problems else f"ok, {summary.fps:.1f} fps"
