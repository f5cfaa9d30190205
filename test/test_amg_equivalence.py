"""The pipeline against segment-anything's SamAutomaticMaskGenerator on the same (seeded) MobileSAM weights.

Random weights make masks that overlap heavily, so NMS is loosened (as the other thresholds are) and
every mask is matched to the reference's mask of the same point prompt and output: that compares the
whole decode -> score -> filter -> upsample chain mask by mask. NMS itself is compared with the
reference's semantics in test_filters.py.
"""
import numpy as np
import pytest
import torch

from reference import SamAutomaticMaskGenerator, reference_mobile_sam
from sam_ros.config import SamRosConfig
from sam_ros.model import load_sam
from sam_ros.pipeline import Segmenter

GRID = 5
pytestmark = pytest.mark.slow  # two MobileSAM encoders at 1024 px on the CPU: ~30 s on 2 cores


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    torch.set_num_threads(2)
    reference = reference_mobile_sam(seed=0)
    path = tmp_path_factory.mktemp("ckpt") / "mobile_sam.pt"
    torch.save(reference.state_dict(), path)
    image = np.kron(np.random.RandomState(0).randint(0, 255, (6, 8, 3)), np.ones((40, 40, 1))).astype(np.uint8)
    image = image[:237, :301]  # odd size: exercises resizing and padding
    generator = SamAutomaticMaskGenerator(reference, points_per_side=GRID, pred_iou_thresh=0.3,
                                          stability_score_thresh=0.5, box_nms_thresh=1.0, points_per_batch=64)
    expected = generator.generate(image)
    config = SamRosConfig(device="cpu", grid_size=GRID, pred_iou_thresh=0.3, stability_thresh=0.5,
                          nms_thresh=1.0, min_area=0, max_objects=1000)
    result = Segmenter(config, load_sam(path)[0]).segment(image)
    return expected, result


def test_same_masks_as_the_reference_amg(both):
    expected, result = both
    assert len(expected) > 20, "thresholds should let many masks through"
    assert abs(len(result) - len(expected)) <= 0.05 * len(expected)
    ours_points = result.points.numpy()
    ours_iou = result.predicted_iou.numpy()
    matched = 0
    for record in expected:
        same_point = np.abs(ours_points - np.array(record["point_coords"][0])).max(1) < 1e-3
        assert same_point.any(), f"no mask of ours for prompt {record['point_coords']}"
        candidates = np.flatnonzero(same_point)
        best = candidates[np.abs(ours_iou[candidates] - record["predicted_iou"]).argmin()]
        assert abs(ours_iou[best] - record["predicted_iou"]) < 1e-3
        assert abs(result.stability[best].item() - record["stability_score"]) < 0.02
        ours_mask, ref_mask = result.masks[best].numpy(), record["segmentation"]
        mask_iou = (ours_mask & ref_mask).sum() / max((ours_mask | ref_mask).sum(), 1)
        matched += mask_iou >= 0.9
    assert matched >= 0.95 * len(expected)


def test_boxes_and_areas_follow_the_reference_conventions(both):
    expected, result = both
    records = result.records()
    for record in records:
        x, y, w, h = record.bbox
        ys, xs = np.nonzero(record.segmentation)
        assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())
        assert record.area == record.segmentation.sum()
