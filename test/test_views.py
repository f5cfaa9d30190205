"""Crop layers and scales as a batch of views, against segment-anything's own helpers and plain loops."""
import json

import numpy as np
import pytest
import torch

import reference  # noqa: F401  (puts the torchvision stand-ins first on sys.path)
from mobile_sam.utils.amg import build_all_layer_point_grids, generate_crop_boxes, is_box_near_crop_edge
from sam_ros.config import SamRosConfig, parse_scales
from sam_ros.datatypes import EncodedImage, EncodedViews
from sam_ros.decode import decode_points
from sam_ros.filters import grouped_nms, near_crop_edge
from sam_ros.model import load_sam
from sam_ros.pipeline import Segmenter
from sam_ros.views import crop_boxes, layer_point_grids, load_point_grids, scale_views, view_points, view_specs


@pytest.mark.parametrize("size,layers,overlap", [((480, 640), 1, 512 / 1500), ((237, 301), 2, 0.2), ((100, 50), 3, 0.5)])
def test_crop_boxes_are_segment_anythings(size, layers, overlap):
    boxes, layer_index = generate_crop_boxes(size, layers, overlap)
    assert crop_boxes(size, layers, overlap) == [(tuple(b), i) for b, i in zip(boxes, layer_index)]


def test_layer_grids_are_segment_anythings():
    for ours, theirs in zip(layer_point_grids(12, 2, 2), build_all_layer_point_grids(12, 2, 2)):
        np.testing.assert_allclose(ours.numpy(), theirs)


def test_scales_tile_the_frame():
    views = scale_views((480, 640), (0.5, 1.0, 1.5, 2.0), 1024)
    assert views[0].box == (0, 0, 640, 480) and views[0].long_side == 512
    tiles_15, tiles_2 = views[1:5], views[5:]
    assert len(tiles_15) == 4 and len(tiles_2) == 4
    for tiles, scale in ((tiles_15, 1.5), (tiles_2, 2.0)):
        covered = np.zeros((480, 640), bool)
        for v in tiles:
            x0, y0, x1, y1 = v.box
            assert abs((x1 - x0) - 640 / scale) <= 1 and abs((y1 - y0) - 480 / scale) <= 1
            covered[y0:y1, x0:x1] = True
        assert covered.all()
    assert parse_scales(" 0.5, 1.5") == (0.5, 1.5) and parse_scales("") == ()
    for bad in ("x", "0.1", "nan", "1,,2"):
        with pytest.raises(ValueError, match="scales"):
            SamRosConfig(scales=bad)


def test_crop_edge_filter_is_segment_anythings():
    rng = np.random.default_rng(0)
    crop = [0, 0, 330, 250]
    xy = rng.integers(0, 320, (200, 2))
    boxes = torch.tensor(np.concatenate([xy, xy + rng.integers(1, 200, (200, 2))], 1), dtype=torch.float32)
    boxes = torch.minimum(boxes, torch.tensor([329.0, 249.0, 329.0, 249.0]))
    expected = is_box_near_crop_edge(boxes, crop, [0, 0, 640, 480])  # takes boxes in crop coordinates: origin 0
    ours = near_crop_edge(boxes, torch.tensor([crop] * 200, dtype=torch.float32), (480, 640))
    assert torch.equal(ours, expected) and expected.any() and not expected.all()


def test_grouped_nms_is_nms_within_each_group_as_plain_loops():
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 50, (60, 2))
    boxes = torch.tensor(np.concatenate([xy, xy + rng.uniform(5, 30, (60, 2))], 1), dtype=torch.float32)
    scores, groups = torch.tensor(rng.uniform(size=60)), torch.tensor(rng.integers(0, 3, 60))
    kept = grouped_nms(boxes, scores, groups, 0.5).tolist()
    expected = []
    for g in range(3):
        members = sorted(np.flatnonzero(groups.numpy() == g), key=lambda i: -scores[i])
        chosen = []
        for i in members:
            if all(_iou(boxes[i], boxes[j]) <= 0.5 for j in chosen):
                chosen.append(i)
        expected += chosen
    assert kept == expected


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return float(ix * iy / union)


def test_one_decoder_pass_over_all_views_equals_each_view_alone(model, frame):
    """Prompts of several crops in one call give exactly what each crop's own call gives."""
    segmenter = Segmenter(SamRosConfig(device="cpu", crop_n_layers=1, grid_size=3), model)
    views = segmenter.encode_views(frame)
    assert len(views) == 5 and views.embedding.shape[0] == 5
    points, index = view_points(views, layer_point_grids(3, 1, 1), first=0)
    thresholds = dict(pred_iou_thresh=-1.0, stability_thresh=0.0, stability_offset=1.0, mask_threshold=0.0,
                      max_memory_mb=64)
    together = decode_points(model, views, points, view_index=index, **thresholds)
    for i, view in enumerate(views.views):
        alone = decode_points(model, view, points[index == i], **thresholds)
        mine = together.views() == i
        torch.testing.assert_close(together.logits[mine], alone.logits, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(together.iou[mine], alone.iou, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(together.points[mine], alone.points)


def test_views_encode_in_batches_like_one_at_a_time(model, frame):
    one = Segmenter(SamRosConfig(device="cpu", crop_n_layers=1, max_encoder_batch=1), model).encode_views(frame)
    many = Segmenter(SamRosConfig(device="cpu", crop_n_layers=1, max_encoder_batch=8), model).encode_views(frame)
    torch.testing.assert_close(one.embedding, many.embedding, atol=1e-4, rtol=1e-4)
    assert [v.box for v in one.views] == [s.box for s in view_specs(frame.shape[:2], model.img_size, 1)]


def test_every_mask_record_carries_its_crop_box(frame):
    """With the trained model: a random one makes blobs that the crop-edge filter drops everywhere."""
    config = SamRosConfig(device="cpu", crop_n_layers=1, grid_size=6, pred_iou_thresh=0.3, stability_thresh=0.5,
                          min_area=0, nms_thresh=1.0, crop_nms_thresh=1.0)
    result = Segmenter(config, load_sam("bundled")[0]).segment(frame)
    crops = {(x0, y0, x1 - x0, y1 - y0) for (x0, y0, x1, y1), _ in crop_boxes(frame.shape[:2], 1, 512 / 1500)}
    records = result.records()
    assert len({r.crop_box for r in records}) > 1 and {r.crop_box for r in records} <= crops
    for record in records:  # every mask lies inside its crop, and its prompt too
        x, y, w, h = record.crop_box
        outside = record.segmentation.copy()
        outside[y:y + h, x:x + w] = False
        assert not outside.any() and x <= record.point_coords[0] <= x + w and y <= record.point_coords[1] <= y + h


def test_custom_point_grids(tmp_path, model, frame):
    path = tmp_path / "grids.json"
    path.write_text(json.dumps([[[0.25, 0.5], [0.75, 0.5]], [[0.5, 0.5]]]))
    grids = load_point_grids(path)
    assert [len(g) for g in grids] == [2, 1]
    config = SamRosConfig(device="cpu", point_grids=str(path), crop_n_layers=1, pred_iou_thresh=0.0,
                          stability_thresh=0.0, min_area=0, nms_thresh=1.0, crop_nms_thresh=1.0)
    result = Segmenter(config, model).segment(frame)
    assert result.num_prompts == 2 + 4  # two on the frame, one per crop
    h, w = frame.shape[:2]
    assert {tuple(p) for p in result.points[result.crop_boxes[:, 2] == w].tolist()} <= {(w / 4, h / 2), (3 * w / 4, h / 2)}
    path.write_text("[[[1.5, 0.5]]]")
    with pytest.raises(ValueError, match="within"):
        load_point_grids(path)


def test_multimask_output_off_keeps_the_single_mask_output(model, frame):
    encoded = Segmenter(SamRosConfig(device="cpu"), model).encode(frame)
    points = torch.tensor([[40.0, 30.0], [100.0, 80.0]])
    batch = decode_points(model, encoded, points, pred_iou_thresh=-10.0, stability_thresh=0.0, stability_offset=1.0,
                          mask_threshold=0.0, max_memory_mb=64, multimask_output=False)
    with torch.no_grad():
        sparse = model.prompt_encoder.embed_points(encoded.to_input(points)[:, None], torch.ones(2, 1))
        _, iou = model.mask_decoder(encoded.embedding, model.prompt_encoder.get_dense_pe(), sparse,
                                    model.prompt_encoder.dense_no_mask(), False)
    assert len(batch) == 2
    torch.testing.assert_close(batch.iou, iou[:, 0], atol=1e-5, rtol=1e-5)


def test_multi_scale_masks_come_from_the_scale_views(frame):
    config = SamRosConfig(device="cpu", scales="0.5,2", grid_size=6, pred_iou_thresh=0.3, stability_thresh=0.5,
                          min_area=0)
    segmenter = Segmenter(config, load_sam("bundled")[0])
    result = segmenter.segment(frame)
    h, w = frame.shape[:2]
    views = {(0, 0, w, h)} | {v.box for v in scale_views((h, w), (0.5, 2.0), 256)}
    assert result.num_prompts == 36 * (1 + 1 + 4)  # the frame, the frame at half resolution, 2x2 tiles
    assert len(result) > 0 and {tuple(b) for b in result.crop_boxes.long().tolist()} <= views


def test_lowres_boxes_bound_the_exact_ones_within_a_cell(frame):
    """exact_mask_boxes off: boxes from low-res cells; a frame pixel only mixes cells next to it."""
    from sam_ros.views import frame_boxes, lowres_boxes

    model = load_sam("bundled")[0]
    segmenter = Segmenter(SamRosConfig(device="cpu", crop_n_layers=1), model)
    views = segmenter.encode_views(frame)
    points, index = view_points(views, layer_point_grids(4, 1, 1), first=0)
    batch = decode_points(model, views, points, view_index=index, pred_iou_thresh=0.3, stability_thresh=0.5,
                          stability_offset=1.0, mask_threshold=0.0, max_memory_mb=256)
    exact, _ = frame_boxes(batch, views, 0.0)
    approx, _ = lowres_boxes(batch, views, 0.0)
    cell = 4 * frame.shape[1] / model.img_size  # frame pixels per low-res cell of the whole-frame view, the coarsest
    present = exact[:, 2] > 0
    assert present.sum() > 5
    assert (exact[present, :2] >= approx[present, :2] - cell).all() and (exact[present, 2:] <= approx[present, 2:] + cell).all()
    config = SamRosConfig(device="cpu", crop_n_layers=1, exact_mask_boxes=False, pred_iou_thresh=0.3,
                          stability_thresh=0.5, grid_size=4)
    assert len(Segmenter(config, model).segment(frame)) > 0
