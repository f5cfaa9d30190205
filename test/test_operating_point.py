"""The operating-point sweep scores exactly what the real pipeline keeps, and picks by its rule."""
import pytest
import torch

from sam_ros.config import SamRosConfig
from sam_ros.model import load_sam
from sam_ros.pipeline import Segmenter
from sam_ros.train.evaluate import held_out_scene, mask_iou, object_masks
from sam_ros.train.operating_point import candidates, choose, kept


@pytest.mark.parametrize("exact_mask_boxes", [True, False])
def test_selection_from_one_decode_matches_the_pipeline_for_several_thresholds(exact_mask_boxes):
    model, _ = load_sam("bundled")
    scene = held_out_scene(3)
    truth = torch.from_numpy(object_masks(scene))
    base = SamRosConfig(device="cpu", dtype="float32", grid_size=8, min_area=400, exact_mask_boxes=exact_mask_boxes)
    scored = candidates(Segmenter(base, model=model), scene.rgb, truth)
    for pred_iou, stability, nms in ((0.5, 0.8, 0.4), (0.7, 0.9, 0.3), (0.6, 0.85, 0.6)):
        config = base.replace(pred_iou_thresh=pred_iou, stability_thresh=stability, nms_thresh=nms)
        result = Segmenter(config, model=model).segment(scene.rgb)
        order = kept(scored, config)
        assert len(order) == len(result)
        if len(result):
            assert torch.allclose(scored.truth_iou[order], mask_iou(result.masks.cpu(), truth), atol=1e-6)


def test_choice_is_the_best_worst_style_recall_within_the_mask_cap():
    counts = {  # (pred_iou, stability, nms): {style: [objects, found, masks]}
        (0.5, 0.8, 0.4): {"a": [10, 10, 20], "b": [10, 9, 12]},   # best recall but 2 masks per object
        (0.6, 0.8, 0.4): {"a": [10, 9, 14], "b": [10, 7, 11]},    # worst style 0.7
        (0.7, 0.8, 0.4): {"a": [10, 8, 12], "b": [10, 8, 12]},    # worst style 0.8: chosen
        (0.8, 0.8, 0.4): {"a": [10, 8, 10], "b": [10, 8, 10]},    # same recall, fewer masks: chosen
    }
    combo, table = choose(counts, max_masks_per_object=1.5)
    assert combo == (0.8, 0.8, 0.4)
    assert [row["within_cap"] for row in table] == [False, True, True, True]
