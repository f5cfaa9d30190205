"""bench/isolated.py: a case's process that dies without a result fails the bench instead of hanging it."""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from isolated import in_own_process  # noqa: E402


def answer(value, results):
    results.put(value * 2)


def crash(value, results):
    raise RuntimeError("a case that fails, as the reference did on a GPU with a CPU-only NMS")


def vanish(value, results):
    os._exit(3)


def test_a_result_comes_back():
    assert in_own_process(answer, 21) == 42


@pytest.mark.parametrize("target, exit_code", [(crash, 1), (vanish, 3)])
def test_a_process_that_ends_without_a_result_raises(target, exit_code):
    with pytest.raises(RuntimeError, match=f"exit code {exit_code}"):
        in_own_process(target, 0)
