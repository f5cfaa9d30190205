"""Sliding-window diagnostics against streams whose true rate, gaps and latencies are known."""
import numpy as np
import pytest

from sam_ros.diagnostics import ERROR, OK, WARN, FrameStats, health


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def stream(stats, clock, rate_hz, seconds, latency_ms=50.0, jitter=0.0, seed=0):
    """Frames at ``rate_hz`` (optionally jittered): each received, matched and processed."""
    rng = np.random.default_rng(seed)
    for _ in range(int(round(seconds * rate_hz))):
        clock.now += 1.0 / rate_hz + (rng.uniform(-jitter, jitter) / rate_hz if jitter else 0.0)
        stats.record("received", 3)
        stats.record("matched")
        stats.record_latency(latency_ms)


@pytest.mark.parametrize("rate_hz", [0.7, 2.0, 2.9, 13.0, 30.0])
def test_fps_is_the_true_rate_wherever_the_window_cuts(rate_hz):
    clock = Clock()
    stats = FrameStats(window_s=5.0, clock=clock)
    stream(stats, clock, rate_hz, 12.0, jitter=0.05)
    for offset in np.linspace(0.0, 0.9 / rate_hz, 7):  # anywhere between two frames
        clock.now += offset
        assert stats.summary().fps == pytest.approx(rate_hz, rel=0.05)
        clock.now -= offset


def test_fps_falls_to_zero_and_no_input_is_a_warning_once_input_stops():
    clock = Clock()
    stats = FrameStats(window_s=5.0, clock=clock)
    stream(stats, clock, 10.0, 10.0)
    assert health(stats.summary(), no_input_after_s=2.0) == (OK, "ok, 10.0 fps")
    clock.now += 3.0
    summary = stats.summary()
    assert 0 < summary.fps < 10.0  # only what the window still holds
    level, message = health(summary, no_input_after_s=2.0)
    assert level == WARN and message == "no input for 3 s"
    clock.now += 2.5
    summary = stats.summary()
    assert summary.fps == 0.0 and summary.latency_p95_ms is None
    assert summary.totals["processed"] == 100  # cumulative counts stay
    assert health(summary, 2.0) == (WARN, "no input for 6 s")


def test_a_rejected_frame_warns_only_while_it_is_in_the_window():
    clock = Clock()
    stats = FrameStats(window_s=5.0, clock=clock)
    stream(stats, clock, 15.0, 3.0)
    stats.record("rejected")
    level, message = health(stats.summary(), 2.0)
    assert level == WARN and "1 frame(s) rejected in the last 5 s" in message
    stream(stats, clock, 15.0, 5.5)
    assert health(stats.summary(), 2.0)[0] == OK
    assert stats.summary().totals["rejected"] == 1


def test_errors_are_an_error_and_unmatched_input_a_warning():
    clock = Clock()
    stats = FrameStats(window_s=2.0, clock=clock)
    stream(stats, clock, 10.0, 1.0)
    stats.record("errors")
    assert health(stats.summary(), 1.0)[0] == ERROR
    for _ in range(40):  # colour keeps coming, nothing ever matches (e.g. no camera_info)
        clock.now += 0.1
        stats.record("received")
    level, message = health(stats.summary(), 1.0)
    assert level == WARN and "matched" in message


def test_latency_percentiles_of_the_window():
    clock = Clock()
    stats = FrameStats(window_s=100.0, clock=clock)
    latencies = np.random.default_rng(1).uniform(10, 500, 200)
    for ms in latencies:
        clock.now += 0.1
        stats.record_latency(ms)
    summary = stats.summary()
    ordered = sorted(latencies)
    assert summary.latency_p95_ms == ordered[int(np.ceil(0.95 * 200)) - 1]
    assert summary.latency_p50_ms == ordered[99] and summary.latency_max_ms == ordered[-1]


def test_no_input_yet_and_bad_arguments():
    stats = FrameStats(window_s=1.0, clock=Clock())
    assert health(stats.summary(), 2.0) == (WARN, "no input yet")
    with pytest.raises(ValueError, match="unknown event"):
        stats.record("teleported")
    with pytest.raises(ValueError, match="window"):
        FrameStats(window_s=0.0)
