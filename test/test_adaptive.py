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


def test_with_crops_each_views_dense_points_go_where_its_own_sparse_masks_fall_short(monkeypatch):
    """Crop layer 1 + adaptive density, shipped model: the first decoder call is every view's sparse grid;
    the second, every view's dense points that the sparse masks of that same view leave uncovered or crowded
    (checked cell by cell with a plain loop over the low-res masks)."""
    import numpy as np

    import sam_ros.pipeline as pipeline
    from sam_ros.decode import decode_points
    from sam_ros.filters import masks_to_boxes, nms
    from sam_ros.model import load_sam
    from sam_ros.synthetic import Intrinsics, render, sample_scene
    from sam_ros.views import layer_point_grids, view_points

    model = load_sam("bundled")[0]
    image = render(sample_scene(np.random.default_rng(3), n_small=(3, 3)), Intrinsics.default(320, 240)).rgb
    config = SamRosConfig(device="cpu", grid_size=4, crop_n_layers=1, adaptive_density=True, adaptive_dense_grid=8,
                          pred_iou_thresh=0.5, stability_thresh=0.7, min_area=0)
    segmenter = Segmenter(config, model)
    calls = []

    def spy(*args, **kwargs):
        calls.append((args[2], kwargs.get("view_index")))
        return decode_points(*args, **kwargs)

    monkeypatch.setattr(pipeline, "decode_points", spy)
    result = segmenter.segment(image)
    views = segmenter.encode_views(image)
    sparse_points, sparse_views = view_points(views, layer_point_grids(4, 1, 1), first=0)
    assert len(calls) == 2 and torch.equal(calls[0][0], sparse_points) and torch.equal(calls[0][1], sparse_views)
    sparse = decode_points(model, views, sparse_points, view_index=sparse_views, pred_iou_thresh=0.5,
                           stability_thresh=0.7, stability_offset=config.stability_offset, mask_threshold=0.0,
                           max_memory_mb=config.max_decode_memory_mb)
    dense_points, dense_views = view_points(views, layer_point_grids(8, 1, 1), first=0)
    expected = []
    for (x, y), view in zip(dense_points.tolist(), dense_views.tolist()):  # plain loop over the same rule
        own = torch.nonzero(sparse.views() == view).squeeze(1)
        own = own[nms(masks_to_boxes(sparse.logits[own] > 0), sparse.iou[own], config.nms_thresh)]
        cx, cy = (views.views[view].to_input(torch.tensor([[x, y]])) / 4).long()[0].tolist()
        covering = int((sparse.logits[own, cy, cx] > 0).sum())
        expected.append(covering == 0 or covering >= config.adaptive_overlap)
    expected = torch.tensor(expected)
    points, view_index = calls[1]
    assert 0 < int(expected.sum()) < len(expected)
    assert torch.equal(points, dense_points[expected]) and torch.equal(view_index, dense_views[expected])
    assert result.num_prompts == len(sparse_points) + int(expected.sum())
