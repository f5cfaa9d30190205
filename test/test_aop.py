"""AoP prompts: confidence-map sampling, prompt elimination, the predictor file, the pipeline, training."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from sam_ros.config import SamRosConfig
from sam_ros.model import BUNDLED_PARAMS, TINY
from sam_ros.pipeline import Segmenter
from sam_ros.prompts import EncodedImage, GridPrompts, PromptPredictor, load_predictor, predictor_beside, save_predictor
from sam_ros.prompts.aop import AoPPrompts, eliminate_redundant, gaussian_blur, sample_prompts, smooth_confidence
from sam_ros.synthetic import Intrinsics, render, sample_scene
from sam_ros.train.train_aop import fit, gaussian_map, pcm_size, teacher_data, to_cells

LOOSE = dict(device="cpu", pred_iou_thresh=0.0, stability_thresh=0.0, min_area=0, nms_thresh=1.0, max_objects=1000)


def encoded_for(frame_hw=(480, 640), side=256, channels=8, cells=16, embedding=None) -> EncodedImage:
    """Geometry of a frame resized into a side x side model input (longest side fits)."""
    height, width = frame_hw
    scale = side / max(height, width)
    input_size = (int(height * scale + 0.5), int(width * scale + 0.5))
    if embedding is None:
        embedding = torch.randn(1, channels, cells, cells)
    return EncodedImage(embedding, torch.zeros(1, 3, side, side), frame_hw, input_size)


def blob(size: int, x: float, y: float, sigma: float, height: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    return height * torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))


def test_gaussian_blur_matches_scipy():
    image = torch.rand(1, 1, 40, 50)
    for sigma in (0.7, 2.0):
        ours = gaussian_blur(image.double(), sigma)[0, 0].numpy()
        theirs = ndimage.gaussian_filter(image[0, 0].double().numpy(), sigma, mode="nearest", truncate=3.0)
        # scipy's radius is int(3 sigma + 0.5), ours ceil(3 sigma): equal up to the truncated tail.
        np.testing.assert_allclose(ours, theirs, atol=2e-3)
    assert torch.equal(gaussian_blur(image, 0.0), image)


def test_sampling_finds_confident_peaks_spaced_and_inside_the_frame():
    encoded = encoded_for()  # 640x480 -> 256x192 inside a 256 square: PCM rows >= 24 of 32 are padding
    pcm = (blob(32, 5.5, 5.5, 1.0, 0.9) + blob(32, 20.5, 12.5, 1.0, 0.6) + blob(32, 23.5, 12.5, 1.0, 0.5)
           + blob(32, 10.5, 18.5, 1.0, 0.1)       # below the confidence threshold
           + blob(32, 12.5, 28.5, 1.0, 0.9))      # in the padding below the frame
    points, confidence = sample_prompts(pcm.clamp(max=1), encoded, conf_thresh=0.2, spacing=8.0)
    # Spacing 8 of 64 cells = 4 PCM cells: the peak at x=23.5 is 3 cells from a stronger one and goes.
    assert len(points) == 2
    assert torch.all(confidence[:-1] >= confidence[1:])
    scale = 8 * 640 / 256  # PCM cell -> model pixels -> frame pixels
    torch.testing.assert_close(points, torch.tensor([[5.5, 5.5], [20.5, 12.5]]) * scale)
    without_spacing, _ = sample_prompts(pcm.clamp(max=1), encoded, conf_thresh=0.2, spacing=0.0)
    assert len(without_spacing) == 3
    assert len(sample_prompts(pcm, encoded, conf_thresh=0.95, spacing=8.0)[0]) == 0


def test_smoothing_merges_nearby_peaks_into_one_prompt():
    encoded = encoded_for()
    pcm = blob(32, 10.5, 10.5, 0.6, 0.8) + blob(32, 12.5, 10.5, 0.6, 0.8)
    assert len(sample_prompts(pcm, encoded, conf_thresh=0.1, spacing=0.0)[0]) == 2
    merged, _ = sample_prompts(smooth_confidence(pcm, 4.0), encoded, conf_thresh=0.1, spacing=0.0)
    assert len(merged) == 1
    assert abs(merged[0, 0].item() / 20 - 11.5) <= 1.0  # between the two, in PCM cells


def two_region_encoding() -> EncodedImage:
    """Left half of the frame has one feature vector, the right half an orthogonal one."""
    torch.manual_seed(0)
    embedding = torch.zeros(1, 8, 16, 16)
    embedding[0, 0, :, :8] = 1.0
    embedding[0, 1, :, 8:] = 1.0
    embedding += 0.05 * torch.randn_like(embedding)
    return encoded_for((256, 256), embedding=embedding)


def test_elimination_drops_prompts_on_segmented_objects_only():
    encoded = two_region_encoding()
    left_mask = torch.full((1, 64, 64), -5.0)
    left_mask[0, :, :32] = 5.0   # the first batch segmented the left half
    candidates = torch.tensor([[60.0, 100.0], [200.0, 100.0], [100.0, 30.0]])  # left, right, left
    keep = eliminate_redundant(candidates, left_mask, encoded, elim_thresh=1.3)
    assert keep.tolist() == [False, True, False]
    # Lower thresholds remove more, higher fewer: at 5x the mean similarity nothing is redundant.
    assert eliminate_redundant(candidates, left_mask, encoded, elim_thresh=5.0).all()
    assert eliminate_redundant(candidates, left_mask[:0], encoded, elim_thresh=1.3).all()


def test_elimination_keeps_a_covered_prompt_whose_features_differ():
    encoded = two_region_encoding()
    everything = torch.full((1, 64, 64), 5.0)  # one mask over both regions: its mean feature fits neither well
    candidates = torch.tensor([[60.0, 100.0], [200.0, 100.0]])
    assert eliminate_redundant(candidates, everything, encoded, elim_thresh=1.3).all()


def test_predictor_file_round_trip_and_errors(tmp_path):
    predictor = PromptPredictor(TINY.prompt_embed_dim, hidden=8, upscale=2)
    embedding = torch.randn(1, TINY.prompt_embed_dim, 16, 16)
    assert predictor(embedding).shape == (1, 1, 32, 32)
    save_predictor(tmp_path / "p.pt", predictor, training={"note": "test"})
    loaded, metadata = load_predictor(tmp_path / "p.pt")
    assert metadata == {"training": {"note": "test"}}
    torch.testing.assert_close(loaded(embedding), predictor.eval()(embedding))
    with pytest.raises(FileNotFoundError, match="train_aop"):
        load_predictor(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not an AoP prompt predictor"):
        load_predictor(tmp_path / "foreign.pt")
    assert predictor_beside("/models/mobile_sam.pt").name == "mobile_sam_aop.pt"


def constant_predictor(channels: int, logit: float) -> PromptPredictor:
    """A predictor whose map is the same everywhere: every cell is a peak, so spacing alone decides."""
    predictor = PromptPredictor(channels, hidden=4, upscale=2)
    with torch.no_grad():
        for parameter in predictor.parameters():
            parameter.zero_()
        predictor.head.bias.fill_(logit)
    return predictor.eval()


def test_pipeline_with_aop_prompts_decodes_in_two_batches(model, frame, tmp_path):
    path = tmp_path / "aop.pt"
    save_predictor(path, constant_predictor(TINY.prompt_embed_dim, 2.0))
    config = SamRosConfig(prompt_mode="aop", aop_checkpoint=str(path), aop_spacing=16.0, aop_smoothing=0.0,
                          aop_fill_grid=6, **LOOSE)
    segmenter = Segmenter(config, model)
    strategy = segmenter.strategy
    encoded = segmenter.encode(frame)
    points, _ = sample_prompts(strategy.confidence_map(encoded), encoded, 0.2, 16.0)
    assert 4 <= len(points) <= 24, "spacing 16 (8 PCM cells) leaves a sparse lattice, not a prompt per cell"
    calls = []
    batch = strategy.propose(encoded, lambda p: calls.append(len(p)) or segmenter_decode(segmenter, encoded, p))
    # The predicted prompts first; then the grid points the elimination map did not drop (loose filters accept
    # masks nearly everywhere, so most grid points lie on a segmented region).
    assert len(calls) in (1, 2) and calls[0] == len(points) and sum(calls[1:]) < 36
    assert 0 < len(batch) <= 3 * sum(calls)
    result = segmenter.segment(frame)
    assert result.num_prompts == sum(calls) and len(result) > 0
    segmenter.update(config.replace(aop_fill_grid=0))
    assert segmenter.segment(frame).num_prompts == len(points)  # predicted prompts only
    # Nothing above the confidence threshold and no mask to eliminate with: the grid alone is decoded.
    segmenter.update(config.replace(aop_conf_thresh=0.95))
    assert segmenter.segment(frame).num_prompts == 36
    segmenter.update(config.replace(aop_conf_thresh=0.95, aop_fill_grid=0))
    empty = segmenter.segment(frame)
    assert empty.num_prompts == 0 and len(empty) == 0 and empty.masks.shape[1:] == frame.shape[:2]


class FixedMapPrompts(AoPPrompts):
    """AoP with a given confidence map (S, S) over the padded model input."""

    def __init__(self, pcm: torch.Tensor, **kwargs) -> None:
        super().__init__(None, **kwargs)
        self.pcm = pcm

    def confidence_map(self, encoded: EncodedImage) -> torch.Tensor:
        return self.pcm


def test_fill_points_where_the_predictor_expects_nothing_are_not_candidates():
    """Confidence 0.5 over the frame's top-left quarter (model-input cells), 0 elsewhere: with ``fill_min_conf``
    0.3 the fill grid's candidates are exactly its points in that quarter; with 0, the whole grid."""
    encoded = encoded_for(side=256)
    pcm = torch.zeros(64, 64)
    pcm[:20, :32] = 0.5  # model-input pixels y < 80, x < 128: frame pixels y < 200, x < 320 (scale 2.5)
    grid = GridPrompts(16).points(encoded)
    quarter = grid[(grid[:, 0] < 320) & (grid[:, 1] < 200)]
    gated = FixedMapPrompts(pcm, smoothing=0.0, conf_thresh=0.95, fill_grid=16, fill_min_conf=0.3)
    points, fill = gated.candidates(encoded)
    assert len(points) == 0 and len(quarter) > 0 and torch.equal(fill, quarter)
    every = FixedMapPrompts(pcm, smoothing=0.0, conf_thresh=0.95, fill_grid=16)
    assert torch.equal(every.candidates(encoded)[1], grid)


def segmenter_decode(segmenter: Segmenter, encoded: EncodedImage, points: torch.Tensor):
    from sam_ros.decode import decode_points
    config = segmenter.config
    return decode_points(segmenter.model, encoded, points, pred_iou_thresh=config.pred_iou_thresh,
                         stability_thresh=config.stability_thresh, stability_offset=config.stability_offset,
                         mask_threshold=config.mask_threshold, max_memory_mb=config.max_decode_memory_mb)


def test_aop_mode_without_a_predictor_is_a_clear_error(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="train_aop"):
        Segmenter(SamRosConfig(prompt_mode="aop", aop_checkpoint=str(tmp_path / "none.pt"), **LOOSE), model)
    save_predictor(tmp_path / "wide.pt", PromptPredictor(256))
    with pytest.raises(ValueError, match="256-channel"):
        Segmenter(SamRosConfig(prompt_mode="aop", aop_checkpoint=str(tmp_path / "wide.pt"), **LOOSE), model)
    segmenter = Segmenter(SamRosConfig(**LOOSE), model)
    with pytest.raises(FileNotFoundError):  # switching at run time fails the same way, and keeps the grid
        segmenter.update(segmenter.config.replace(prompt_mode="aop", aop_checkpoint=str(tmp_path / "none.pt")))
    assert segmenter.config.prompt_mode == "grid"


def test_target_has_a_unit_peak_at_each_essential_prompt():
    encoded = encoded_for()
    points = torch.tensor([[110.0, 50.0], [510.0, 410.0]])  # frame pixels at PCM cell centres
    cells = to_cells(points, encoded, 32)
    torch.testing.assert_close(cells, points * (256 / 640) * (32 / 256))
    target = gaussian_map(cells, 32, sigma=2.0)
    for x, y in cells.long().tolist():
        assert target[y, x] > 0.99 and target[y, x] == target[max(0, y - 2):y + 3, max(0, x - 2):x + 3].max()
    assert target.max() <= 1.0 and target[0, 31] < 1e-3


def test_predictor_learns_the_teachers_essential_prompts():
    """The shipped model, as a dense-grid teacher, labels a few scenes; a short fit of its essential prompts
    halves the loss."""
    teacher = Segmenter(SamRosConfig.from_yaml(BUNDLED_PARAMS).replace(device="cpu", grid_size=8, min_area=0))
    frames = [(render(sample_scene(np.random.default_rng(i)), Intrinsics.default(160, 120)).rgb, None) for i in range(6)]
    data = teacher_data(teacher, frames)
    cells = teacher.model.prompt_encoder.image_embedding_size[0]
    assert data.embeddings.shape == (6, TINY.prompt_embed_dim, cells, cells)
    size, upscale = pcm_size(teacher)
    assert data.size == size and all(len(p) > 0 and len(p) == len(c) for p, c in zip(data.prompts, data.centres))
    valid = torch.tensor([size, size * 120 / 160])  # 160x120 frames fill the top 3/4 of the square input
    assert all(((p >= 0) & (p <= valid)).all() and ((c >= 0) & (c <= valid)).all()
               for p, c in zip(data.prompts, data.centres))
    targets = data.targets(sigma=4.0)
    assert targets.shape == (6, size, size) and torch.equal(targets, data.targets(4.0, at="prompts"))
    torch.manual_seed(0)
    predictor = PromptPredictor(TINY.prompt_embed_dim, hidden=16, upscale=upscale)
    log = fit(predictor, data.embeddings, targets, epochs=60, lr=5e-3, batch=8, seed=0, log_every=59)
    losses = [entry["train_loss"] for entry in log if "train_loss" in entry]
    assert losses[-1] < 0.5 * losses[0]
    assert 0 <= log[-1]["kept_epoch"] < 60  # the weights kept are those of the best held-out epoch


def test_greedy_matching_scores_each_object_once():
    from sam_ros.train.evaluate import greedy_matched_iou
    iou = torch.tensor([[0.9, 0.8, 0.0],    # prediction 0 is best for object 0; object 1 must take another
                        [0.0, 0.6, 0.0],
                        [0.1, 0.7, 0.0]])   # nothing covers object 2
    torch.testing.assert_close(greedy_matched_iou(iou), torch.tensor([0.9, 0.7, 0.0]))
    torch.testing.assert_close(greedy_matched_iou(torch.zeros(0, 2)), torch.zeros(2))
