import numpy as np
import pytest
import torch

from sam_ros.config import SamRosConfig
from sam_ros.decode import prompts_per_call
from sam_ros.pipeline import Segmenter, resolve_device
from sam_ros.camera import PinholeCamera
from sam_ros.synthetic import to_16uc1_mm

LOOSE = dict(device="cpu", pred_iou_thresh=0.0, stability_thresh=0.0, min_area=0, nms_thresh=1.0, max_objects=1000)


def test_chunked_decoding_gives_the_same_masks_as_one_batch(model, frame):
    one = Segmenter(SamRosConfig(grid_size=20, **LOOSE), model).segment(frame)
    segmenter = Segmenter(SamRosConfig(grid_size=20, max_decode_memory_mb=64, **LOOSE), model)
    per_chunk = prompts_per_call(segmenter.encode(frame).embedding, 64)
    assert per_chunk < 20 * 20, "the cap must force more than one decoder call"
    chunked = segmenter.segment(frame)
    assert len(one) == len(chunked) and len(one) > 0
    assert torch.equal(one.masks, chunked.masks)
    assert torch.allclose(one.predicted_iou, chunked.predicted_iou, atol=1e-5)


def test_update_applies_dynamic_fields_without_reloading(model, frame):
    segmenter = Segmenter(SamRosConfig(grid_size=4, **LOOSE), model)
    assert segmenter.segment(frame).num_prompts == 16
    segmenter.update(segmenter.config.replace(grid_size=5, max_objects=2))
    result = segmenter.segment(frame)
    assert result.num_prompts == 25 and len(result) <= 2 and segmenter.model is model
    with pytest.raises(ValueError, match="needs a restart"):
        segmenter.update(segmenter.config.replace(checkpoint="other.pt"))
    with pytest.raises(FileNotFoundError, match="aop_checkpoint"):
        segmenter.update(segmenter.config.replace(prompt_mode="aop"))
    assert segmenter.config.prompt_mode == "grid"


def test_results_are_filtered_sorted_and_timed(model, frame):
    result = Segmenter(SamRosConfig(grid_size=6, **{**LOOSE, "nms_thresh": 0.5, "min_area": 50}), model).segment(frame)
    assert (result.areas >= 50).all()
    stages = {"preprocess_ms", "encoder_ms", "prompts_ms", "decode_ms", "filter_ms", "postprocess_ms"}
    assert set(result.timings_ms) == stages | {"total_ms"}
    assert all(result.timings_ms[name] >= 0 for name in stages)
    assert result.timings_ms["total_ms"] == pytest.approx(sum(result.timings_ms[name] for name in stages))
    records = result.records()
    assert [r.id for r in records] == list(range(1, len(records) + 1))
    assert all(r.segmentation.shape == frame.shape[:2] for r in records)


def test_bad_frames_raise_value_errors(model):
    segmenter = Segmenter(SamRosConfig(**LOOSE), model)
    for bad in (np.zeros((10, 10), np.uint8), np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10, 3), np.float32)):
        with pytest.raises(ValueError):
            segmenter.segment(bad)


def test_device_resolution():
    assert resolve_device("cpu", "auto") == (torch.device("cpu"), torch.float32)
    assert resolve_device("cpu", "bfloat16")[1] == torch.bfloat16
    with pytest.raises(ValueError, match="float16 needs a CUDA"):
        resolve_device("cpu", "float16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda", "auto")


def test_run_fuses_depth_into_objects_and_keeps_ids(model, scene):
    camera = PinholeCamera(160, 120, scene.intrinsics.K)
    segmenter = Segmenter(SamRosConfig(grid_size=4, **{**LOOSE, "nms_thresh": 0.7}), model)
    depth_mm = to_16uc1_mm(scene.depth)
    first = segmenter.run(scene.rgb, depth_mm, camera)
    assert len(first.objects) == len(first.segmentation) == len(first.track_ids) > 0
    assert {"scene_ms", "planes_ms", "refine_ms", "hierarchy_ms", "fusion_ms", "relations_ms", "tracking_ms"} <= set(first.timings_ms)
    valid = [e for e in first.objects if e.valid]
    assert valid and all(0.5 < e.centroid[2] < 5.0 for e in valid)  # metres: depth_scale turned mm into m
    again = segmenter.run(scene.rgb, depth_mm, camera)
    assert again.track_ids == first.track_ids  # same frame, same objects, same ids
    without_depth = segmenter.run(scene.rgb)
    assert without_depth.objects is None and without_depth.track_ids == first.track_ids  # matched by mask IoU
    segmenter.update(segmenter.config.replace(track_max_distance=0.05, track_min_iou=0.5))
    assert (segmenter.tracker.max_distance, segmenter.tracker.min_iou) == (0.05, 0.5)
    assert segmenter.run(scene.rgb, depth_mm, camera).track_ids == first.track_ids  # new gates, same tracks


def test_run_expresses_objects_in_a_target_frame(model, scene):
    """With camera -> target (REP 103 optical -> body: z forward becomes x forward, -y up becomes z up)."""
    camera = PinholeCamera(160, 120, scene.intrinsics.K)
    depth_mm = to_16uc1_mm(scene.depth)
    config = SamRosConfig(grid_size=4, **{**LOOSE, "nms_thresh": 0.7})
    in_camera = Segmenter(config, model).run(scene.rgb, depth_mm, camera).objects
    to_body = np.eye(4)
    to_body[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
    to_body[:3, 3] = [0.1, 0.0, 0.5]
    body_frame = Segmenter(config, model).run(scene.rgb, depth_mm, camera, camera_to_target=to_body)
    in_body = body_frame.objects
    pairs = [(c, b) for c, b in zip(in_camera, in_body) if c.valid]
    assert pairs and all(b.valid for _, b in pairs)
    index, points = body_frame.object_points.index.numpy(), body_frame.object_points.points.numpy()
    checked = 0
    for c, b in pairs:
        np.testing.assert_allclose(b.centroid, to_body[:3, :3] @ c.centroid + to_body[:3, 3], atol=1e-4)
        np.testing.assert_allclose(b.aabb_size, c.aabb_size[[2, 0, 1]], rtol=1e-4, atol=1e-4)  # axes permuted, not resized
        mine = points[index == in_body.index(b), 2]
        if mine.size:  # published objects: the box's height is measured along the body's z (up)
            assert b.obb_size[2] == pytest.approx(np.percentile(mine, 99) - np.percentile(mine, 1), abs=0.01)
            checked += 1
    assert checked


def test_run_refuses_depth_that_does_not_fit(model, scene):
    segmenter = Segmenter(SamRosConfig(grid_size=2, **LOOSE), model)
    camera = PinholeCamera(160, 120, scene.intrinsics.K)
    with pytest.raises(ValueError, match="intrinsics"):
        segmenter.run(scene.rgb, scene.depth)
    with pytest.raises(ValueError, match="size mismatch"):
        segmenter.run(scene.rgb, scene.depth[:60], camera)
    with pytest.raises(ValueError, match="size mismatch"):
        segmenter.run(scene.rgb, scene.depth, PinholeCamera(320, 240, scene.intrinsics.K))


def test_a_frame_without_masks_gives_an_empty_frame(model, scene):
    """Nothing passes the filters: no crash anywhere downstream (scene analysis, tracking, temporal prompts)."""
    from sam_ros.camera import PinholeCamera
    from sam_ros.synthetic import to_16uc1_mm

    camera = PinholeCamera(scene.rgb.shape[1], scene.rgb.shape[0], scene.intrinsics.K)
    for temporal in (False, True):
        segmenter = Segmenter(SamRosConfig(grid_size=2, **{**LOOSE, "pred_iou_thresh": 1.0},
                                           temporal_prompts=temporal), model)
        for _ in range(2):
            out = segmenter.run(scene.rgb, to_16uc1_mm(scene.depth), camera)
            assert len(out.segmentation) == 0 and out.track_ids == [] and out.objects == []
