import numpy as np
import torch

from sam_ros import timing
from sam_ros.timing import StageTimer
from sam_ros.transfer import PinnedStaging


def test_stages_named_twice_add_up_and_nested_stages_count_in_both(monkeypatch):
    clock = iter(range(100))
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock) / 1000.0)  # 1 ms per reading
    timer = StageTimer(torch.device("cpu"))
    with timer.stage("prompts_ms"):          # readings 0 .. 5
        with timer.stage("decode_ms"):       # 1 .. 2
            pass
        with timer.stage("decode_ms"):       # 3 .. 4
            pass
    with timer.stage("filter_ms"):           # 6 .. 7
        pass
    assert timer.milliseconds() == {"decode_ms": 2.0, "prompts_ms": 5.0, "filter_ms": 1.0}


def test_cpu_transfers_copy_nothing():
    staging = PinnedStaging()
    frame = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    up = staging.upload(frame, torch.device("cpu"))
    assert up.dtype == torch.uint8 and np.array_equal(up.numpy(), frame)
    masks = torch.ones(2, 3, 3, dtype=torch.bool)
    assert staging.download(masks) is masks
