"""Segment everything in one frame: encode once, decode all prompts in one batch, filter on the device.

``Segmenter`` maps the one configuration object onto the stage functions and reports how long each
stage took, so the node's diagnostics and the benchmarks read the same numbers. ``Segmenter.run``
adds the depth side: 3D objects fused from the aligned depth image, with ids stable across frames.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from .camera import PinholeCamera
from .config import SamRosConfig, parse_scales
from .datatypes import EncodedViews
from .decode import MaskBatch, decode_points
from .filters import grouped_nms, masks_to_boxes, near_crop_edge, nms, touches_frame_edge
from .scene.boxes import BoxContinuity, TrackBox, box_rotation
from .scene.fusion import Object3DEstimate, ObjectPoints, depth_to_metres
from .scene.planes import Plane
from .scene.stage import STRUCTURE, Scene, analyse_scene
from .image import depth_channel, preprocess, preprocess_views
from .masks import MaskRecord
from .model import CheckpointNotFoundError, Sam, load_sam, resolve_checkpoint
from .prompts import (AdaptiveGridPrompts, AoPPrompts, EncodedImage, GridPrompts, PromptPredictor, PromptStrategy, load_predictor,
                      predictor_beside)
from .prompts.temporal import TemporalPrompts, temporal_wrapped
from .regions import clean_small_regions
from .timing import StageTimer
from .tracking import ObjectTracker, Role
from .transfer import PinnedStaging
from .views import frame_boxes, layer_point_grids, load_point_grids, lowres_boxes, upsample_views, view_points, view_specs

# Fields whose change needs a new model (or device); everything else applies to the next frame.
MODEL_FIELDS = ("checkpoint", "device", "dtype")
Z_UP = np.array([0.0, 0.0, 1.0])  # "up" in a REP 103 body or world frame
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class SegmentationResult:
    """The masks of one frame, best first, on the device they were computed on."""

    masks: torch.Tensor           # (N, H, W) bool, frame resolution
    boxes: torch.Tensor           # (N, 4) x0, y0, x1, y1 inclusive, frame pixels
    areas: torch.Tensor           # (N,) pixels
    predicted_iou: torch.Tensor   # (N,)
    stability: torch.Tensor       # (N,)
    points: torch.Tensor          # (N, 2) prompt of each mask, frame pixels (x, y)
    num_prompts: int
    # preprocess, encoder, prompts (choosing them), decode, filter, postprocess (upsampling), total
    timings_ms: dict[str, float] = field(default_factory=dict)
    # (N, 4) x0, y0, x1, y1 (exclusive ends) of the crop each mask was found in; None = all in the whole frame
    crop_boxes: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.masks.shape[0]

    def records(self) -> list[MaskRecord]:
        """Host-side records (segment-anything AMG fields); ids are the result's order, 1-based."""
        masks = self.masks.cpu().numpy()
        boxes, areas = self.boxes.cpu().long().tolist(), self.areas.cpu().tolist()
        iou, stability, points = self.predicted_iou.cpu().tolist(), self.stability.cpu().tolist(), self.points.cpu().tolist()
        height, width = self.masks.shape[1:]
        crops = (self.crop_boxes.cpu().long().tolist() if self.crop_boxes is not None
                 else [[0, 0, width, height]] * len(boxes))
        return [MaskRecord(i + 1, masks[i], (b[0], b[1], b[2] - b[0] + 1, b[3] - b[1] + 1), int(areas[i]),
                           float(iou[i]), float(stability[i]), (float(points[i][0]), float(points[i][1])),
                           (c[0], c[1], c[2] - c[0], c[3] - c[1]))
                for i, (b, c) in enumerate(zip(boxes, crops))]


@dataclass
class Frame:
    """One colour (+ depth) frame through the whole pipeline: masks, their 3D objects, stable ids."""

    segmentation: SegmentationResult
    track_ids: list[int]                         # one per mask, stable across frames
    objects: list[Object3DEstimate] | None       # one per mask; None without depth (or use_depth off)
    timings_ms: dict[str, float]                 # the segmentation's, plus fusion and tracking
    object_points: ObjectPoints | None = None    # the points of the published objects (Scene.published); None without depth
    planes: list[Plane] | None = None            # structure planes (floor, walls, table tops); None without depth
    up: np.ndarray | None = None                 # the objects' frame's vertical (given, or estimated from the floor)
    refined_masks: torch.Tensor | None = None    # (N, H, W) masks cut to their own surface (scene.refine); None without depth


def track_roles(objects: list[Object3DEstimate]) -> list[Role]:
    """Each mask's role for the tracker: structure, a part (it has a parent) or a whole object."""
    return [Role.STRUCTURE if o.kind == STRUCTURE else Role.PART if o.parent >= 0 else Role.WHOLE for o in objects]


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """'auto' picks cuda + float16 when a GPU is there, else cpu + float32; impossible asks are errors."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU (use device 'cpu' or 'auto')")
    if dtype == "auto":
        dtype = "float16" if device == "cuda" else "float32"
    if dtype == "float16" and device == "cpu":
        raise ValueError("float16 needs a CUDA device; on the CPU use float32 or bfloat16")
    return torch.device(device), DTYPES[dtype]


class Segmenter:
    def __init__(self, config: SamRosConfig = SamRosConfig(), model: Sam | None = None) -> None:
        self.device, self.dtype = resolve_device(config.device, config.dtype)
        if model is None:
            model, _ = load_sam(config.checkpoint or None, self.device, self.dtype)
        self.model = model.to(self.device, self.dtype).eval()
        self.config = config
        self._predictor: tuple[str, PromptPredictor] | None = None  # (file, predictor) of the last one loaded
        self._grids_file: tuple[str, list[torch.Tensor]] | None = None  # point_grids path and its grids
        self._staging = PinnedStaging()
        self.strategy = self._strategy(config)
        self.tracker = ObjectTracker(config.track_max_distance, config.track_min_iou, config.track_max_age)
        self._rays: tuple[tuple, np.ndarray] | None = None
        self.boxes = BoxContinuity(config.track_smoothing, config.track_smoothing_gate)

    def check(self, config: SamRosConfig) -> PromptStrategy:
        """The prompt strategy ``config`` needs (loading a new AoP predictor), or why it cannot apply."""
        changed = [name for name in MODEL_FIELDS if getattr(config, name) != getattr(self.config, name)]
        if changed:
            raise ValueError(f"changing {', '.join(changed)} needs a restart")
        return self._strategy(config)

    def update(self, config: SamRosConfig) -> None:
        """Apply a new configuration; call it between frames (``run`` reads ``self.config`` in several stages)."""
        self.strategy = self.check(config)
        # New gates apply to the tracks already held: objects keep their ids across a parameter change.
        self.tracker.max_distance, self.tracker.min_iou, self.tracker.max_age = (
            config.track_max_distance, config.track_min_iou, config.track_max_age)
        self.boxes.smoothing, self.boxes.gate = config.track_smoothing, config.track_smoothing_gate
        self.config = config

    def _strategy(self, config: SamRosConfig) -> PromptStrategy:
        base = self._base_strategy(config)
        if not config.temporal_prompts:
            return base
        return temporal_wrapped(base, getattr(self, "strategy", None), config.rescan_every,
                                config.temporal_coverage_drop, config.mask_threshold, config.nms_thresh,
                                config.temporal_skip_similarity)

    def _base_strategy(self, config: SamRosConfig) -> PromptStrategy:
        if config.prompt_mode == "grid" and config.adaptive_density:
            return AdaptiveGridPrompts(config.grid_size, config.adaptive_dense_grid, config.adaptive_overlap,
                                       config.mask_threshold, config.nms_thresh)
        if config.prompt_mode == "grid":
            return GridPrompts(config.grid_size, self._point_grids(config)[0] if config.point_grids else None)
        return AoPPrompts(self._prompt_predictor(config), config.aop_smoothing, config.aop_conf_thresh,
                          config.aop_spacing, config.aop_elim_thresh, config.aop_fill_grid, config.mask_threshold,
                          config.aop_fill_min_conf)

    def _prompt_predictor(self, config: SamRosConfig) -> PromptPredictor:
        """The AoP predictor, loaded when first needed or when its file changes, checked against the model."""
        path = config.aop_checkpoint
        if not path:
            try:
                path = predictor_beside(resolve_checkpoint(config.checkpoint or None))
            except CheckpointNotFoundError:
                raise FileNotFoundError("prompt_mode 'aop' needs a prompt predictor: set aop_checkpoint "
                                        "(there is no model file to look beside)") from None
        if self._predictor is None or self._predictor[0] != str(path):
            predictor, _ = load_predictor(path, self.device, self.dtype)
            channels = self.model.prompt_encoder.embed_dim
            if predictor.embed_dim != channels:
                raise ValueError(f"AoP predictor {path} was trained for {predictor.embed_dim}-channel embeddings, "
                                 f"this model has {channels}: train one for it (python -m sam_ros.train.train_aop)")
            self._predictor = (str(path), predictor)
        return self._predictor[1]

    def _point_grids(self, config: SamRosConfig) -> list[torch.Tensor]:
        """Unit point grids per crop layer: the custom ``point_grids`` file (read once) or regular grids."""
        if not config.point_grids:
            return layer_point_grids(config.grid_size, config.crop_n_layers, config.crop_n_points_downscale_factor)
        if self._grids_file is None or self._grids_file[0] != config.point_grids:
            self._grids_file = (config.point_grids, load_point_grids(config.point_grids))
        return self._grids_file[1]

    @torch.inference_mode()
    def encode_views(self, rgb: np.ndarray, timer: StageTimer | None = None,
                     depth_m: np.ndarray | None = None) -> EncodedViews:
        """The frame, its crops and its scales, preprocessed and encoded in batches of ``max_encoder_batch``."""
        config, timer = self.config, StageTimer(self.device) if timer is None else timer
        specs = view_specs(rgb.shape[:2], self.model.img_size, config.crop_n_layers, config.crop_overlap_ratio,
                           parse_scales(config.scales))
        with timer.stage("preprocess_ms"):
            images, sizes = preprocess_views(rgb, [v.box for v in specs], [v.long_side for v in specs],
                                             self.model.img_size, self.model.pixel_mean, self.model.pixel_std,
                                             self.device, self.dtype)
            images = self._with_depth(images, depth_m, [spec.box for spec in specs], sizes)
        with timer.stage("encoder_ms"):
            step = config.max_encoder_batch
            embedding = torch.cat([self.model.image_encoder(images[i:i + step]) for i in range(0, len(images), step)])
        views = [EncodedImage(embedding[i:i + 1], images[i:i + 1], rgb.shape[:2], sizes[i], spec.box)
                 for i, spec in enumerate(specs)]
        return EncodedViews(embedding, views, [spec.layer for spec in specs])

    @torch.inference_mode()
    def encode(self, rgb: np.ndarray, depth_m: np.ndarray | None = None) -> EncodedImage:
        """Preprocess and run the image encoder once; everything prompt-side reuses the result."""
        image, input_size = self._preprocess(rgb, depth_m)
        return EncodedImage(self.model.image_encoder(image), image, rgb.shape[:2], input_size)

    def _preprocess(self, rgb: np.ndarray, depth_m: np.ndarray | None) -> tuple[torch.Tensor, tuple[int, int]]:
        image, input_size = preprocess(rgb, self.model.img_size, self.model.pixel_mean, self.model.pixel_std,
                                       self.device, self.dtype, self._staging)
        return self._with_depth(image, depth_m, [None], [input_size]), input_size

    def _with_depth(self, images: torch.Tensor, depth_m: np.ndarray | None,
                    boxes: list[tuple[int, int, int, int] | None], sizes: list[tuple[int, int]]) -> torch.Tensor:
        """The views' model input; a model with ``depth_input`` also gets each view's depth channel (zeros
        without depth). ``boxes``: the views' frame regions (None = the whole frame), ``sizes`` their resized (h, w)."""
        if not self.model.depth_input:
            return images
        depth = [depth_channel(depth_m, box, size, self.model.img_size, self.device) for box, size in zip(boxes, sizes)]
        return torch.cat([images, torch.cat(depth).to(images.dtype)], dim=1)

    @torch.inference_mode()
    def segment(self, rgb: np.ndarray, depth_m: np.ndarray | None = None) -> SegmentationResult:
        """All masks of one uint8 HxWx3 RGB frame; raises ValueError for malformed frames.

        ``depth_m`` (metres aligned to ``rgb``, NaN where invalid) is read only by a model with a depth input.
        """
        timer = StageTimer(self.device)
        if depth_m is not None and np.shape(depth_m)[:2] != np.shape(rgb)[:2]:
            raise ValueError(f"size mismatch: colour {np.shape(rgb)[:2]}, depth {np.shape(depth_m)[:2]}; "
                             f"align depth to colour")
        if self.config.crop_n_layers or parse_scales(self.config.scales):
            encoded = self.encode_views(rgb, timer, depth_m)
        else:
            with timer.stage("preprocess_ms"):
                image, input_size = self._preprocess(rgb, depth_m)
            with timer.stage("encoder_ms"):
                encoded = EncodedImage(self.model.image_encoder(image), image, rgb.shape[:2], input_size)
        result = self._segment_encoded(encoded, timer)
        result.timings_ms = self._timings(timer)
        return result

    @torch.inference_mode()
    def segment_encoded(self, encoded: EncodedImage | EncodedViews) -> SegmentationResult:
        """The prompt side of ``segment`` for an image already encoded (timings from 'prompts' on).

        With several views (crops, scales) the strategy places prompts on the whole frame (view 0); the
        grid points of the other views ride along in its first decoder call and their masks join after it.
        """
        timer = StageTimer(self.device)
        result = self._segment_encoded(encoded, timer)
        result.timings_ms = self._timings(timer)
        return result

    def _segment_encoded(self, encoded: EncodedImage | EncodedViews, timer: StageTimer) -> SegmentationResult:
        config = self.config
        views = encoded if isinstance(encoded, EncodedViews) else EncodedViews.single(encoded)
        prompts = []
        pending = [view_points(views, self._point_grids(config))]  # the other views' prompts, not yet decoded
        other_views: list[MaskBatch] = []
        adaptive = self.strategy if isinstance(self.strategy, AdaptiveGridPrompts) and len(views) > 1 else None
        if adaptive is not None:  # the other views' dense points, decoded after their sparse ones where needed
            pending.insert(0, view_points(views, layer_point_grids(config.adaptive_dense_grid, config.crop_n_layers,
                                                                   config.crop_n_points_downscale_factor)))

        def decode(points: torch.Tensor) -> MaskBatch:
            view_index = None
            if pending and len(pending[-1][0]):
                extra, extra_views = pending.pop()
                if adaptive is not None and other_views:
                    needed = adaptive.needed_in_views(extra, extra_views, other_views[0], views)
                    extra, extra_views = extra[needed], extra_views[needed]
                view_index = torch.cat([torch.zeros(len(points), dtype=torch.long, device=extra_views.device),
                                        extra_views])
                points = torch.cat([points.to(extra), extra])
            prompts.append(points.shape[0])
            with timer.stage("decode_ms"):
                batch = decode_points(self.model, views if view_index is not None else views.views[0], points,
                                      pred_iou_thresh=config.pred_iou_thresh, stability_thresh=config.stability_thresh,
                                      stability_offset=config.stability_offset, mask_threshold=config.mask_threshold,
                                      max_memory_mb=config.max_decode_memory_mb, view_index=view_index,
                                      multimask_output=config.multimask_output)
            if view_index is not None:  # the strategy sees the masks of its own prompts only
                other_views.append(batch.select(torch.nonzero(batch.views() > 0).squeeze(1)))
                batch = batch.select(torch.nonzero(batch.views() == 0).squeeze(1))
            return batch

        with timer.stage("prompts_ms"):
            batch = self.strategy.propose(views.views[0], decode)
            while pending and len(pending[-1][0]):  # the strategy made fewer decoder calls than the views need
                decode(pending[-1][0].new_empty(0, 2))
            batch = MaskBatch.cat([batch, *other_views]) if other_views else batch
        with timer.stage("filter_ms"):
            batch = self._filter(batch, views)
        with timer.stage("postprocess_ms"):
            return self._to_frame(batch, views, sum(prompts))

    @staticmethod
    def _timings(timer: StageTimer) -> dict[str, float]:
        """The frame's stage times (the one synchronisation per frame on a GPU); 'prompts' is choosing them."""
        timings = timer.milliseconds()
        timings["decode_ms"] = timings.get("decode_ms", 0.0)
        timings["prompts_ms"] = max(0.0, timings["prompts_ms"] - timings["decode_ms"])
        timings["total_ms"] = sum(timings.values())
        return timings

    def run(self, rgb: np.ndarray, depth: np.ndarray | None = None, camera: PinholeCamera | None = None,
            camera_to_target: np.ndarray | None = None) -> Frame:
        """Segment a frame, fuse each mask with the aligned ``depth`` into a 3D object, and track ids.

        ``depth`` is the depth image aligned to ``rgb`` as the driver publishes it: uint16 in units of
        ``depth_scale`` (16UC1) or float32 metres (32FC1); ``camera`` is the colour camera. Objects are in
        the camera's optical frame, or in a target frame (REP 103: z up) when ``camera_to_target`` (4x4)
        is given, and so are the points each valid object is made of (``Frame.object_points``). Without depth
        (or with ``use_depth`` off) both are None and ids are tracked by mask overlap alone.
        """
        config = self.config
        fuse = depth is not None and config.use_depth
        if depth is not None:
            if camera is None:
                raise ValueError("depth needs the colour camera's intrinsics (camera) to place objects in 3D")
            depth_shape = np.shape(depth)[:2]
            if depth_shape != np.shape(rgb)[:2] or (camera.height, camera.width) != np.shape(rgb)[:2]:
                raise ValueError(f"size mismatch: colour {np.shape(rgb)[:2]}, depth {depth_shape}, camera "
                                 f"{(camera.height, camera.width)} (height, width); align depth to colour")
        temporal = self.strategy if isinstance(self.strategy, TemporalPrompts) else None
        start = time.perf_counter()
        if temporal is not None:
            temporal.set_tracks(*self.tracker.prompts())
        track_prompts_ms = (time.perf_counter() - start) * 1000.0
        start = time.perf_counter()
        depth_m = depth_to_metres(depth, config.depth_scale, config.min_depth, config.max_depth) if fuse else None
        depth_ms = (time.perf_counter() - start) * 1000.0
        result = self.segment(rgb, depth_m)
        timings = dict(result.timings_ms)
        scene = None
        with self._timed(timings, "scene_ms"):
            if fuse:
                scene = self._scene(result, depth_m, camera, camera_to_target)
        timings["scene_ms"] += depth_ms  # converting the depth belongs to the depth side, wherever it is used
        with self._timed(timings, "tracking_ms"):
            objects = scene.objects if scene is not None else None
            centroids = ([e.centroid if e.valid else None for e in objects] if objects is not None
                         else [None] * len(result))
            claims = None
            if temporal is not None:
                temporal.record_kept(result.masks)
                claims = temporal.claims(result.points)
            track_ids = self.tracker.update(result.masks, centroids, claims, result.points,
                                            track_roles(objects) if objects is not None else None, depth_m, rgb)
            if scene is not None:
                self._continuous_boxes(scene, track_ids)
        timings["tracking_ms"] += track_prompts_ms  # placing the tracks' prompts is the tracker's work too
        timings["total_ms"] = sum(v for k, v in timings.items() if k != "total_ms")
        if scene is None:
            return Frame(result, track_ids, None, timings)
        timings.update(scene.timings_ms)  # the scene stage's steps, inside scene_ms
        points = scene.points.select(scene.published(self.config.fuse_parts))
        return Frame(result, track_ids, scene.objects, timings, points, scene.planes, scene.up,
                     torch.from_numpy(scene.masks))

    def _scene(self, result: SegmentationResult, depth_m: np.ndarray, camera: PinholeCamera,
               camera_to_target: np.ndarray | None) -> Scene:
        """Structure, objects, parts, 3D geometry and support of the frame's masks (see scene.stage);
        ``depth_m`` in metres, NaN where invalid."""
        config = self.config
        return analyse_scene(self._staging.download(result.masks), depth_m, camera, result.points.cpu().numpy(), config,
                             transform=camera_to_target, up=None if camera_to_target is None else Z_UP,
                             rays=self._camera_rays(camera))

    def _continuous_boxes(self, scene: Scene, track_ids: list[int]) -> None:
        """Each track's box as the equivalent of this frame's box whose yaw is nearest the track's last one
        (smoothed with ``track_smoothing``)."""
        for estimate, track_id in zip(scene.objects, track_ids):
            if estimate.valid:
                box = self.boxes.update(track_id, TrackBox(estimate.centroid, estimate.obb_center,
                                                           estimate.obb_size, estimate.obb_yaw))
                estimate.centroid, estimate.obb_center, estimate.obb_size, estimate.obb_yaw = (
                    box.centroid, box.center, box.size, box.yaw)
                estimate.obb_rotation = box_rotation(scene.up, estimate.obb_yaw)
        self.boxes.forget_except({t.id for t in self.tracker.tracks})

    def _camera_rays(self, camera: PinholeCamera) -> np.ndarray:
        """Pixel rays of the camera, computed once per calibration (undistortion is not free)."""
        key = (camera.width, camera.height, camera.K.tobytes(), camera.D.tobytes(), camera.distortion_model)
        if self._rays is None or self._rays[0] != key:
            self._rays = (key, camera.rays())
        return self._rays[1]

    def _filter(self, batch: MaskBatch, views: EncodedViews) -> MaskBatch:
        """Area, edge, NMS and count limits on exact boxes and areas, before any mask is kept at frame size."""
        config = self.config
        frame_size = views.views[0].original_size
        measure = frame_boxes if config.exact_mask_boxes else lowres_boxes
        boxes, areas = measure(batch, views, config.mask_threshold)
        keep = areas >= max(config.min_area, 1)
        if config.reject_edge_masks:
            keep &= ~touches_frame_edge(boxes, frame_size)
        if len(views) > 1:  # cut off by a crop's inner edge: a larger view sees the whole object
            keep &= ~near_crop_edge(boxes, views.boxes()[batch.views()], frame_size)
        kept = torch.nonzero(keep).squeeze(1)
        if len(views) == 1:
            order = kept[nms(boxes[kept], batch.iou[kept], config.nms_thresh)]
        else:
            order = self._nms_across_views(batch.select(kept), boxes[kept], views, kept)
        return batch.select(order[:config.max_objects])

    def _nms_across_views(self, batch: MaskBatch, boxes: torch.Tensor, views: EncodedViews,
                          index: torch.Tensor) -> torch.Tensor:
        """segment-anything's two NMS steps: within each view by predicted IoU, then across views preferring
        masks from smaller views (finer detail) by ``crop_nms_thresh``. Returns ``index`` of the kept, best first."""
        within = grouped_nms(boxes, batch.iou, batch.views(), self.config.nms_thresh)
        crop = views.boxes()[batch.views()[within]]
        view_area = (crop[:, 2] - crop[:, 0]) * (crop[:, 3] - crop[:, 1])
        across = within[nms(boxes[within], 1 / view_area, self.config.crop_nms_thresh)]
        return index[across[torch.sort(batch.iou[across], descending=True, stable=True).indices]]

    def _to_frame(self, batch: MaskBatch, views: EncodedViews, num_prompts: int) -> SegmentationResult:
        """Upsample the survivors to frame resolution; exact boxes and areas come from the full masks.

        Small holes and islands (``min_mask_region_area``) are cleaned here, on the survivors only.
        """
        config = self.config
        masks = upsample_views(batch, views, config.mask_threshold)
        keep = torch.nonzero(masks.flatten(1).sum(1) >= max(config.min_area, 1)).squeeze(1)
        masks, batch = masks[keep], batch.select(keep)
        if config.min_mask_region_area > 0:
            masks, _, kept = clean_small_regions(masks, config.min_mask_region_area,
                                                 max(config.nms_thresh, config.crop_nms_thresh))
            batch = batch.select(kept)
            keep = torch.nonzero(masks.flatten(1).sum(1) >= max(config.min_area, 1)).squeeze(1)
            masks, batch = masks[keep], batch.select(keep)
        crop_boxes = views.boxes()[batch.views()] if len(views) > 1 else None
        return SegmentationResult(masks, masks_to_boxes(masks), masks.flatten(1).sum(1), batch.iou, batch.stability,
                                  batch.points, num_prompts, crop_boxes=crop_boxes)

    @contextmanager
    def _timed(self, timings: dict[str, float], name: str):
        """Host clock for host-side stages (fusion, tracking): their waits for GPU results are their own."""
        start = time.perf_counter()
        yield
        timings[name] = (time.perf_counter() - start) * 1000.0
