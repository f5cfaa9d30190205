import sys
from pathlib import Path

# test/reference.py and other test helpers import as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sam_ros.model import TINY, build_sam  # noqa: E402
from sam_ros.synthetic import Intrinsics, render, sample_scene  # noqa: E402


@pytest.fixture(scope="module")
def model():
    """The small architecture with seeded random weights: the computation, not what it has learned."""
    torch.manual_seed(0)
    return build_sam(TINY)


@pytest.fixture(scope="module")
def scene():
    """A small (160x120) synthetic RGB-D scene: fast through any model."""
    return render(sample_scene(np.random.default_rng(2)), Intrinsics.default(160, 120))


@pytest.fixture(scope="module")
def frame(scene):
    return scene.rgb
