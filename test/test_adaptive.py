"""Adaptive grid density: dense prompts only where the sparse masks leave gaps or pile up."""
import torch

from sam_ros.config import SamRosConfig
from sam_ros.datatypes import EncodedImage
from sam_ros.pipeline import Segmenter
from sam_ros.prompts import AdaptiveGridPrompts, GridPrompts, needs_dense


def test_dense_points_go_to_uncovered_and_crowded_cells():
    """Frame 64x64 = model input 256 (low-res cell = 1 frame px); masks drawn directly as low-res logits."""
    encoded = EncodedImage(torch.zeros(1, 8, 16, 16), torch.zeros(1, 3, 256, 256), (64, 64), (256, 256))
    logits = torch.full((4, 64, 64), -5.0)
    logits[0, :, :32] = 5.0                     # left half
    logits[1, 40:60, 40:60] = 5.0               # three masks piled on one square ...
    logits[2, 40:58, 40:58] = 5.0
    logits[3, 42:60, 42:60] = 5.0               # ... NMS at 1.0 keeps them all
    points = torch.tensor(GridPrompts(8).points(encoded).tolist())
    need = needs_dense(points, logits, torch.tensor([0.9, 0.8, 0.7, 0.6]), encoded, overlap=3, nms_thresh=1.0)
    for (x, y), flag in zip(points.tolist(), need.tolist()):  # plain loop over the same rule
        covering = int((logits[:, int(y), int(x)] > 0).sum())
        assert flag == (covering == 0 or covering >= 3), (x, y, covering)
    assert need.any() and not need.all()


def test_adaptive_strategy_decodes_sparse_then_only_the_needed_dense_points(model, frame):
    config = SamRosConfig(device="cpu", grid_size=4, adaptive_density=True, adaptive_dense_grid=8, adaptive_overlap=2,
                          pred_iou_thresh=0.0, stability_thresh=0.0, min_area=0)
    segmenter = Segmenter(config, model)
    assert isinstance(segmenter.strategy, AdaptiveGridPrompts)
    calls = []
    encoded = segmenter.encode(frame)

    def decode(points):
        calls.append(points)
        return _decode(segmenter, encoded, points)

    batch = segmenter.strategy.propose(encoded, decode)
    assert len(calls) in (1, 2) and len(calls[0]) == 16
    if len(calls) == 2:
        dense, sparse = GridPrompts(8).points(encoded), _decode(segmenter, encoded, calls[0])
        expected = dense[needs_dense(dense, sparse.logits, sparse.iou, encoded, 2, 0.0, config.nms_thresh)]
        assert torch.equal(calls[1], expected) and 0 < len(calls[1]) < 64
    assert len(batch) > 0
    result = segmenter.segment(frame)
    assert 16 <= result.num_prompts <= 16 + 64


def _decode(segmenter, encoded, points):
    from sam_ros.decode import decode_points
    c = segmenter.config
    return decode_points(segmenter.model, encoded, points, pred_iou_thresh=c.pred_iou_thresh,
                         stability_thresh=c.stability_thresh, stability_offset=c.stability_offset,
                         mask_threshold=c.mask_threshold, max_memory_mb=c.max_decode_memory_mb)
