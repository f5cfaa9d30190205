import numpy as np
import pytest
import torch

from sam_ros.filters import (box_iou, lowres_boxes_in_frame, masks_to_boxes, nms, stability_score,
                             touches_frame_edge, upsample_to_frame)


def greedy_nms(boxes, scores, threshold):
    """Textbook greedy NMS, one box at a time (the semantics of torchvision.ops.nms)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    iou = box_iou(boxes).numpy()
    keep = []
    for i in order:
        if all(iou[i, j] <= threshold for j in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_nms_equals_greedy_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(60, 2, generator=gen) * 100
    wh = torch.rand(60, 2, generator=gen) * 40 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(60, generator=gen)
    for threshold in (0.3, 0.5, 0.7):
        assert nms(boxes, scores, threshold).tolist() == greedy_nms(boxes, scores.tolist(), threshold)


def test_nms_of_nothing_and_of_duplicates():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    assert nms(boxes, torch.tensor([0.5, 0.9, 0.1]), 0.7).tolist() == [1, 2]


def test_stability_is_iou_of_the_two_thresholded_masks():
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]]])  # > +1: 1 pixel, > -1: 3 pixels
    assert stability_score(logits, 0.0, 1.0).item() == pytest.approx(1 / 3)
    assert stability_score(torch.full((1, 2, 2), -5.0), 0.0, 1.0).item() == 0.0


def test_masks_to_boxes_inclusive_and_empty():
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1:4, 2:7] = True
    assert masks_to_boxes(masks).tolist() == [[2, 1, 6, 3], [0, 0, 0, 0]]


def test_lowres_boxes_scale_to_frame_pixels():
    lowres = torch.zeros(1, 192, 256, dtype=torch.bool)
    lowres[0, 10:20, 30:40] = True  # cells of 4 model px; 640x480 frame resized to 1024x768: 1 cell = 2.5 px
    box = lowres_boxes_in_frame(lowres, (768, 1024), (480, 640))[0].tolist()
    assert box == pytest.approx([75.0, 25.0, 99.0, 49.0])


def test_edge_rejection():
    boxes = torch.tensor([[0, 5, 10, 10], [5, 5, 10, 10], [5, 5, 639, 10]], dtype=torch.float32)
    assert touches_frame_edge(boxes, (480, 640)).tolist() == [True, False, True]


def test_upsampling_maps_lowres_cells_onto_the_frame():
    logits = torch.full((1, 256, 256), -10.0)
    logits[0, 50:100, 60:120] = 10.0  # a block of the resized 1024x768 input: 200..400 x 240..480 px
    mask = upsample_to_frame(logits, (768, 1024), (480, 640), 0.0)[0].numpy()
    ys, xs = np.nonzero(mask)
    assert abs(ys.min() - 125) <= 2 and abs(ys.max() - 249) <= 2
    assert abs(xs.min() - 150) <= 2 and abs(xs.max() - 299) <= 2
    chunked = upsample_to_frame(logits.repeat(5, 1, 1), (768, 1024), (480, 640), 0.0, chunk=2)
    assert chunked.shape == (5, 480, 640) and bool((chunked == torch.from_numpy(mask)).all())


def test_nms_waits_for_the_device_a_logarithmic_number_of_times(monkeypatch):
    """A chain (each box overlaps the next) settles one item per pass: the worst case for the fixed point.
    The result must still be greedy NMS, with convergence checked O(log N) times, not once per pass."""
    n = 64
    x = torch.arange(n, dtype=torch.float32) * 5
    boxes = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], dim=1)
    scores = torch.linspace(1, 0, n)
    checks = []
    equal = torch.equal
    monkeypatch.setattr(torch, "equal", lambda a, b: checks.append(1) or equal(a, b))
    assert nms(boxes, scores, 0.3).tolist() == greedy_nms(boxes, scores.tolist(), 0.3) == list(range(0, n, 2))
    assert len(checks) <= 8  # log2(64) + 2


@pytest.mark.parametrize("lowres, input_size, frame", [(64, (192, 256), (480, 640)), (64, (256, 171), (640, 427)),
                                                       (256, (768, 1024), (480, 640))])
def test_windowed_boxes_and_areas_match_the_full_upsampling(lowres, input_size, frame):
    from sam_ros.filters import upsampled_boxes

    rng = torch.Generator().manual_seed(lowres + frame[0])
    yy, xx = torch.meshgrid(torch.arange(lowres), torch.arange(lowres), indexing="ij")
    centre = torch.randint(0, lowres, (12, 2, 1, 1), generator=rng)
    radius = torch.randint(1, lowres // 2, (12, 1, 1), generator=rng)
    noise = torch.randn(12, lowres, lowres, generator=rng)
    inside = (yy - centre[:, 0]) ** 2 + (xx - centre[:, 1]) ** 2 < radius ** 2
    logits = torch.where(inside, 1.0, -1.0) + 0.8 * noise  # blobs of every size with ragged edges and specks
    logits[0] = -3.0  # an empty mask
    logits[1] = -3.0
    logits[1, -2:, -2:] = 5.0  # positive only in the padding, which reaches no frame pixel
    masks = upsample_to_frame(logits, input_size, frame, 0.0)
    boxes, areas = upsampled_boxes(logits, input_size, frame, 0.0)
    assert torch.equal(boxes, masks_to_boxes(masks))
    assert torch.equal(areas, masks.flatten(1).sum(1).float())
