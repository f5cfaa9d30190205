"""Per-stage timings that cost no synchronisation: CUDA events on a GPU, the host clock on a CPU.

A device-wide ``torch.cuda.synchronize`` after each stage would make every stage wait for the last
and stall the queue the GPU works from. Here each stage records an event before and after it on the
current stream; the elapsed times are read once, after the frame's last event has completed (the one
synchronisation per frame). Stages named more than once (each decoder call) add up.
"""
from __future__ import annotations

import time
from contextlib import contextmanager

import torch


class StageTimer:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._spans: list[tuple[str, object, object]] = []

    @contextmanager
    def stage(self, name: str):
        start = self._mark()
        yield
        self._spans.append((name, start, self._mark()))

    def milliseconds(self) -> dict[str, float]:
        """Each stage's total, in the order first seen; waits (once) for the last recorded event on a GPU."""
        if self.cuda and self._spans:
            self._spans[-1][2].synchronize()
        totals: dict[str, float] = {}
        for name, start, end in self._spans:
            elapsed = start.elapsed_time(end) if self.cuda else (end - start) * 1000.0
            totals[name] = totals.get(name, 0.0) + elapsed
        return totals

    def _mark(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()
