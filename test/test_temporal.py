"""Temporal prompts: the strategy's logic against a decoder whose answer is known (the region a point
lies in), then the whole pipeline on a rendered sequence with the shipped model against ground truth."""
import numpy as np
import torch

from sam_ros.decode import MaskBatch
from sam_ros.prompts import EncodedImage, GridPrompts
from sam_ros.prompts.temporal import TemporalPrompts

H, W, S = 48, 64, 64  # frame; model input 64: one low-res cell per frame pixel (4 * 16-cell embedding)


def encoded_image() -> EncodedImage:
    return EncodedImage(torch.zeros(1, 8, 16, 16), torch.zeros(1, 3, S, S), (H, W), (H, W))


class RegionDecoder:
    """Decodes a point into the mask of the labelled region under it; label 0 yields no mask."""

    def __init__(self, labels: np.ndarray):
        self.labels = torch.from_numpy(labels)
        self.calls: list[torch.Tensor] = []

    def __call__(self, points: torch.Tensor) -> MaskBatch:
        self.calls.append(points.clone())
        x, y = points[:, 0].long(), points[:, 1].long()
        region = self.labels[y, x]
        keep = region > 0
        logits = torch.full((int(keep.sum()), S, S), -1.0)
        logits[:, :H, :W] = torch.where(self.labels[None] == region[keep][:, None, None], 1.0, -1.0)
        n = len(logits)
        return MaskBatch(logits, torch.ones(n), torch.ones(n), points[keep].float())


def keep_all(strategy: TemporalPrompts, batch: MaskBatch) -> MaskBatch:
    """What the pipeline does after filtering: tell the strategy which masks were kept (here: all)."""
    strategy.record_kept(batch.logits[:, :H, :W] > 0)
    return batch


def scene(objects: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Label image: a floor (label 1) on the lower half, objects (x0, y0, x1, y1) as labels 2, 3, ..."""
    labels = np.zeros((H, W), np.int64)
    labels[H // 2:] = 1
    for k, (x0, y0, x1, y1) in enumerate(objects):
        labels[y0:y1, x0:x1] = k + 2
    return labels


def test_first_frame_and_every_rescan_every_frames_are_full_scans():
    strategy = TemporalPrompts(GridPrompts(8), rescan_every=3)
    encoded, grid = encoded_image(), GridPrompts(8).points(encoded_image())
    full = []
    for frame in range(7):
        strategy.set_tracks(torch.tensor([[10.0, 40.0]]), [1])
        decoder = RegionDecoder(scene([(5, 5, 20, 20)]))
        strategy.propose(encoded, decoder)
        full.append(strategy.full_scan)
        if strategy.full_scan:  # the grid, with the track's prompt riding in the same decoder batch
            assert len(decoder.calls) == 1 and torch.equal(decoder.calls[0], torch.cat([torch.tensor([[10.0, 40.0]]), grid]))
    assert full == [True, False, False, True, False, False, True]


def test_track_prompts_first_then_every_uncovered_point():
    objects = [(5, 5, 20, 20), (40, 4, 60, 20)]
    labels = scene(objects)
    encoded = encoded_image()
    grid = GridPrompts(8).points(encoded)
    strategy = TemporalPrompts(GridPrompts(8), rescan_every=10, coverage_drop=0.5)  # (coverage: a test below)
    keep_all(strategy, strategy.propose(encoded, RegionDecoder(labels)))
    tracks = torch.tensor([[12.0, 12.0], [30.0, 40.0]])  # on object 2 and on the floor
    strategy.set_tracks(tracks, [7, 9])
    decoder = RegionDecoder(labels)
    batch = strategy.propose(encoded, decoder)
    assert not strategy.full_scan and torch.equal(decoder.calls[0], tracks)  # (already in sorted order)
    # Second batch: every grid point those masks do not cover: on object 3 and on empty ground alike.
    x, y = grid[:, 0].long(), grid[:, 1].long()
    expected = grid[~torch.isin(torch.from_numpy(labels)[y, x], torch.tensor([1, 2]))]
    assert len(decoder.calls) == 2 and torch.equal(decoder.calls[1], expected)
    regions = {int(torch.from_numpy(labels)[int(p[1]), int(p[0])]) for p in batch.points}
    assert regions == {1, 2, 3}
    assert strategy.claims(batch.points) == [[7], [9]] + [[]] * (len(batch) - 2)


def test_a_new_object_on_empty_ground_is_found_on_the_frame_it_appears():
    encoded = encoded_image()
    strategy = TemporalPrompts(GridPrompts(8), rescan_every=4, coverage_drop=0.5)
    before, after = scene([(5, 5, 20, 20)]), scene([(5, 5, 20, 20), (40, 4, 60, 20)])
    keep_all(strategy, strategy.propose(encoded, RegionDecoder(before)))
    found = None
    for frame in range(1, 4):
        strategy.set_tracks(torch.tensor([[12.0, 12.0], [30.0, 40.0]]), [1, 2])
        batch = keep_all(strategy, strategy.propose(encoded, RegionDecoder(after if frame >= 2 else before)))
        labels = torch.from_numpy(after)
        if found is None and any(labels[int(p[1]), int(p[0])] == 3 for p in batch.points):
            found = frame
    assert found == 2 and not strategy.full_scan  # on its first frame, without a rescan


def test_points_that_gave_nothing_are_skipped_until_the_image_under_them_changes():
    """Grid points on empty ground (no mask) are not decoded again while the embedding under them is the same;
    an object that appears there changes it and is found on that frame; the rescan decodes them all."""
    torch.manual_seed(0)
    embedding = torch.randn(1, 8, 16, 16)
    encoded = EncodedImage(embedding, torch.zeros(1, 3, S, S), (H, W), (H, W))
    moved = embedding.clone()
    moved[..., 1:5, 10:15] = torch.randn(1, 8, 4, 5)  # embedding cells (4 frame px each) over (40, 4, 60, 20)
    grid = GridPrompts(8).points(encoded)
    before, after = scene([(5, 5, 20, 20)]), scene([(5, 5, 20, 20), (40, 4, 60, 20)])
    empty = grid[torch.from_numpy(before)[grid[:, 1].long(), grid[:, 0].long()] == 0]

    def second_batch(strategy, labels, embedding_now):
        strategy.set_tracks(torch.tensor([[12.0, 12.0], [30.0, 40.0]]), [1, 2])
        decoder = RegionDecoder(labels)
        now = EncodedImage(embedding_now, torch.zeros(1, 3, S, S), (H, W), (H, W))
        batch = keep_all(strategy, strategy.propose(now, decoder))
        return (decoder.calls[1] if len(decoder.calls) > 1 else torch.zeros(0, 2)), batch

    strategy = TemporalPrompts(GridPrompts(8), rescan_every=4, coverage_drop=0.5, skip_similarity=0.95)
    keep_all(strategy, strategy.propose(encoded, RegionDecoder(before)))
    decoded, _ = second_batch(strategy, before, embedding)
    assert len(decoded) == 0 and strategy.skipped == len(empty) > 0
    decoded, batch = second_batch(strategy, after, moved)
    on_new = ((decoded[:, 0] >= 40) & (decoded[:, 0] < 60) & (decoded[:, 1] >= 4) & (decoded[:, 1] < 20))
    assert len(decoded) and on_new.all() and strategy.skipped == len(empty) - len(decoded)
    assert 3 in {int(after[int(p[1]), int(p[0])]) for p in batch.points}  # found on the frame it appears
    second_batch(strategy, after, moved)
    assert not strategy.full_scan
    strategy.set_tracks(torch.tensor([[12.0, 12.0]]), [1])
    decoder = RegionDecoder(after)
    strategy.propose(EncodedImage(moved, torch.zeros(1, 3, S, S), (H, W), (H, W)), decoder)
    assert strategy.full_scan and strategy.skipped == 0 and len(decoder.calls[0]) == 1 + len(grid)

    always = TemporalPrompts(GridPrompts(8), rescan_every=4, coverage_drop=0.5, skip_similarity=1.0)
    keep_all(always, always.propose(encoded, RegionDecoder(before)))
    decoded, _ = second_batch(always, before, embedding)
    assert torch.equal(decoded, empty) and always.skipped == 0


def test_when_coverage_falls_the_rest_of_the_frame_is_a_full_scan():
    encoded = encoded_image()
    grid = GridPrompts(8).points(encoded)
    strategy = TemporalPrompts(GridPrompts(8), rescan_every=10, coverage_drop=0.05)
    keep_all(strategy, strategy.propose(encoded, RegionDecoder(scene([(5, 5, 20, 20)]))))
    strategy.set_tracks(torch.tensor([[12.0, 12.0]]), [1])  # the floor's track was lost
    decoder = RegionDecoder(scene([(5, 5, 20, 20)]))
    batch = strategy.propose(encoded, decoder)
    assert strategy.full_scan and len(decoder.calls) == 2 and torch.equal(decoder.calls[1], grid)
    assert strategy.claims(batch.points)[0] == [1]  # the track's mask still claims it


def test_without_tracks_every_frame_is_a_full_scan():
    strategy = TemporalPrompts(GridPrompts(4), rescan_every=5)
    for _ in range(3):
        strategy.propose(encoded_image(), RegionDecoder(scene([])))
        assert strategy.full_scan and strategy.claims(torch.zeros(2, 2)) == [[], []]


def test_tracks_sharing_a_prompt_decode_it_once_and_both_claim_its_masks():
    strategy = TemporalPrompts(GridPrompts(4), rescan_every=5)
    labels = scene([(5, 5, 20, 20)])
    strategy.propose(encoded_image(), RegionDecoder(labels))
    strategy.set_tracks(torch.tensor([[12.0, 12.0], [12.0, 12.0], [30.0, 40.0]]), [4, 5, 6])
    decoder = RegionDecoder(labels)
    batch = strategy.propose(encoded_image(), decoder)
    assert torch.equal(decoder.calls[0], torch.tensor([[12.0, 12.0], [30.0, 40.0]]))
    assert strategy.claims(batch.points)[:2] == [[4, 5], [6]]


def test_pipeline_keeps_ids_and_finds_the_objects_with_fewer_prompts():
    """The shipped model (at its own thresholds) on a small moving sequence: temporal prompts find the
    objects a full scan finds (ground-truth IoU >= 0.5), each object keeps one id, and the frames after
    the first decode a fraction of the grid."""
    from sam_ros.camera import PinholeCamera
    from sam_ros.config import SamRosConfig
    from sam_ros.model import BUNDLED_PARAMS
    from sam_ros.pipeline import Segmenter
    from sam_ros.synthetic import Intrinsics
    from sam_ros.synthetic.sequence import render_sequence

    intrinsics = Intrinsics.default(320, 240)
    sequence = render_sequence(1, 4, intrinsics=intrinsics)
    camera = PinholeCamera(320, 240, intrinsics.K)
    config = SamRosConfig.from_yaml(BUNDLED_PARAMS).replace(device="cpu", dtype="float32", rescan_every=4)
    runs = {}
    for temporal in (False, True):
        segmenter = Segmenter(config.replace(temporal_prompts=temporal))
        found, ids, prompts = [], {}, []
        for frame in sequence:
            out = segmenter.run(frame.scene.rgb, frame.depth_mm, camera)
            masks = out.segmentation.masks.numpy()
            truth, truth_ids = frame.scene.masks()
            hits = 0
            for mask, object_id in zip(truth, truth_ids):
                inter = (masks & mask).reshape(len(masks), -1).sum(1)
                iou = inter / ((masks | mask).reshape(len(masks), -1).sum(1) + 1e-9)
                if len(masks) and iou.max() >= 0.5:
                    hits += 1
                    ids.setdefault(object_id, set()).add(out.track_ids[int(iou.argmax())])
            found.append(hits)
            prompts.append(out.segmentation.num_prompts)
        runs[temporal] = found, ids, prompts
    assert sum(runs[False][0]) >= 4, "the full scan should find objects here"
    assert sum(runs[True][0]) >= sum(runs[False][0]) - 1
    assert all(len(v) == 1 for v in runs[True][1].values())
    assert max(runs[True][2][1:]) < runs[False][2][0] / 4


def test_points_whose_masks_were_not_kept_are_decoded_again_on_the_next_frame():
    """A grid point on object 3 yields a mask that the pipeline drops (say, NMS): the next frame tries again."""
    labels = scene([(5, 5, 20, 20), (40, 4, 60, 20)])
    encoded = encoded_image()
    strategy = TemporalPrompts(GridPrompts(8), rescan_every=10, coverage_drop=0.5)
    batch = strategy.propose(encoded, RegionDecoder(labels))
    region = torch.from_numpy(labels)[batch.points[:, 1].long(), batch.points[:, 0].long()]
    keep_all(strategy, batch.select(torch.nonzero(region != 3).squeeze(1)))
    strategy.set_tracks(torch.tensor([[12.0, 12.0], [30.0, 40.0]]), [1, 2])
    decoder = RegionDecoder(labels)
    strategy.propose(encoded, decoder)
    second = decoder.calls[1].long()
    assert (torch.from_numpy(labels)[second[:, 1], second[:, 0]] == 3).any()


def entering_sequence(seed: int, frames: int, intrinsics):
    """Classic static objects and one more that slides in from the left edge and stops, fully in view from frame 2:
    (rendered scene, noisy 16UC1 depth) per frame, and the enterer's id."""
    from dataclasses import replace

    from sam_ros.synthetic import render
    from sam_ros.synthetic.noise import add_depth_noise, to_16uc1_mm
    from sam_ros.synthetic.scene import sample_scene

    rng = np.random.default_rng(seed)
    spec = sample_scene(rng, n_objects=(2, 3), depth_range=(1.3, 2.6))
    half_fov = intrinsics.width / 2 / intrinsics.fx
    z = 1.6
    start, inside = -(half_fov * z + 0.4), -(half_fov * z - 0.4)
    template = min(spec.objects, key=lambda o: o.size[0])
    enterer = replace(template, id=max(o.id for o in spec.objects) + 1, center=(start, template.center[1], z))
    spec = replace(spec, objects=spec.objects + (enterer,))
    velocity = {enterer.id: ((inside - start) / 2, 0.0)}
    out = []
    for index in range(frames):
        scene = render(spec.moved(velocity, dt=min(index, 2)), intrinsics)  # then it stays
        out.append((scene, to_16uc1_mm(add_depth_noise(scene.depth, rng))))
    return out, enterer.id


def test_pipeline_finds_an_entering_object_and_keeps_static_ids():
    """The shipped model with temporal prompts on a rendered sequence, against ground truth: an object
    that slides into view is found (IoU >= 0.5) within ``rescan_every`` frames of being fully in view,
    here without any rescan (``rescan_every`` is longer than the sequence: the points no track's mask
    covers find it), and each static object's best whole-object mask keeps one id throughout."""
    from sam_ros.camera import PinholeCamera
    from sam_ros.config import SamRosConfig
    from sam_ros.model import BUNDLED_PARAMS
    from sam_ros.pipeline import Segmenter
    from sam_ros.scene.stage import OBJECT
    from sam_ros.synthetic import Intrinsics

    intrinsics = Intrinsics.default(320, 240)
    sequence, enterer = entering_sequence(3, 6, intrinsics)
    camera = PinholeCamera(320, 240, intrinsics.K)
    config = SamRosConfig.from_yaml(BUNDLED_PARAMS).replace(device="cpu", dtype="float32", temporal_prompts=True,
                                                            rescan_every=len(sequence) + 1)
    segmenter = Segmenter(config)
    appear = found = None
    static_ids: dict[int, set[int]] = {}
    for index, (scene, depth) in enumerate(sequence):
        out = segmenter.run(scene.rgb, depth, camera)
        wholes = [k for k, o in enumerate(out.objects) if o.kind == OBJECT and o.parent < 0]
        masks = out.segmentation.masks.numpy()[wholes]
        truth, truth_ids = scene.masks()
        visible = scene.labels == enterer
        if appear is None and visible.sum() > 200 and not (visible[:, 0].any() or visible[:, -1].any()):
            appear = index
        for mask, object_id in zip(truth, truth_ids):
            iou = (masks & mask).reshape(len(masks), -1).sum(1) / ((masks | mask).reshape(len(masks), -1).sum(1) + 1e-9)
            if not len(masks) or iou.max() < 0.5:
                continue
            if object_id == enterer and appear is not None and found is None:
                found = index - appear
            elif object_id != enterer:
                static_ids.setdefault(object_id, set()).add(out.track_ids[wholes[int(iou.argmax())]])
    assert appear is not None and appear <= len(sequence) - 3
    assert found is not None and found <= 1
    assert static_ids and all(len(ids) == 1 for ids in static_ids.values()), static_ids
