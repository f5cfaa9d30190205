import numpy as np
import reference  # noqa: F401  (puts the torchvision stand-in on the path)
from segment_anything.utils.amg import build_point_grid as reference_grid

from sam_ros.prompts import build_point_grid


def test_grid_layout_equals_segment_anything():
    for n in (1, 2, 5, 16, 32):
        assert np.allclose(build_point_grid(n).numpy(), reference_grid(n))
