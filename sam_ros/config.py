"""The one configuration object of sam_ros.

Every tunable lives here once, with its description and valid range, so that ROS parameters
(declared with descriptors from this metadata), the YAML in ``config/`` and the offline CLI all
map onto the same fields and are validated by the same code.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml


def _param(default, description: str, *, low=None, high=None, choices=None, dynamic=False):
    """A config field with the metadata the validators and the ROS parameter descriptors use."""
    return field(default=default, metadata={
        "description": description, "low": low, "high": high, "choices": choices, "dynamic": dynamic})


@dataclass(frozen=True)
class SamRosConfig:
    """All tunables of the pipeline and the node. ``dynamic`` ones may change while running."""

    # --- model -----------------------------------------------------------------------------
    checkpoint: str = _param(
        "", "Model file. '' = $SAM_ROS_CHECKPOINT, else ~/.cache/sam_ros/mobile_sam.pt; "
        "'bundled' = the small model shipped with sam_ros (synthetic scenes only)")
    device: str = _param("auto", "Inference device; auto = cuda when available",
                         choices=("auto", "cuda", "cpu"))
    dtype: str = _param("auto", "Compute precision; auto = float16 on cuda, float32 on cpu",
                        choices=("auto", "float32", "float16", "bfloat16"))

    # --- prompts ---------------------------------------------------------------------------
    prompt_mode: str = _param("grid", "Prompt strategy: a point grid or the learned AoP predictor",
                              choices=("grid", "aop"), dynamic=True)
    grid_size: int = _param(16, "Points per side of the prompt grid", low=1, high=64, dynamic=True)
    aop_checkpoint: str = _param("", "AoP prompt predictor file; '' = <model file>_aop.pt beside the model "
                                 "(shipped for 'bundled'); a change loads the new file", dynamic=True)
    aop_smoothing: float = _param(2.0, "AoP: Gaussian sigma applied to the prompt-confidence map, in cells of a "
                                  "64-cell grid over the image (paper's smoothing factor)",
                                  low=0.0, high=10.0, dynamic=True)
    aop_conf_thresh: float = _param(0.2, "AoP: minimum smoothed confidence of a prompt",
                                    low=0.0, high=1.0, dynamic=True)
    aop_spacing: float = _param(6.0, "AoP: minimum distance between prompts, in cells of a 64-cell grid over "
                                "the image (paper's spacing factor)", low=0.0, high=64.0, dynamic=True)
    aop_elim_thresh: float = _param(1.0, "AoP: a grid point on an already segmented object is not decoded when its "
                                    "similarity exceeds this times the mean similarity (lower drops more)",
                                    low=0.0, high=5.0, dynamic=True)
    aop_fill_grid: int = _param(16, "AoP: points per side of the grid checked after the predicted prompts; points "
                                "not on an object already segmented are decoded too (0 = predicted prompts only)",
                                low=0, high=64, dynamic=True)
    aop_fill_min_conf: float = _param(0.1, "AoP: fill-grid points where the smoothed prompt confidence is below this "
                                      "are not decoded (0 = every fill point is a candidate)",
                                      low=0.0, high=1.0, dynamic=True)
    temporal_prompts: bool = _param(False, "Video: decode the live tracks' points first (inside their last masks, moved "
                                    "by their motion), then every grid/AoP point those masks leave uncovered; "
                                    "masks keep the id of the track whose prompt made them", dynamic=True)
    rescan_every: int = _param(8, "Temporal prompts: a full grid/AoP scan every this many frames (a new object is "
                               "found within this many frames)", low=1, high=1000, dynamic=True)
    temporal_coverage_drop: float = _param(0.05, "Temporal prompts: a full scan when the tracks' masks cover this "
                                           "fraction of the frame less than the last frame's masks did",
                                           low=0.0, high=1.0, dynamic=True)
    temporal_skip_similarity: float = _param(0.98, "Temporal prompts: between scans, a grid/AoP point that no kept "
                                             "mask covered is not decoded again while the image embedding under it "
                                             "stays above this cosine similarity to when it was (1 = always decode)",
                                             low=0.0, high=1.0, dynamic=True)

    # --- mask filtering --------------------------------------------------------------------
    pred_iou_thresh: float = _param(0.88, "Drop masks whose predicted IoU is below this",
                                    low=0.0, high=1.0, dynamic=True)
    stability_thresh: float = _param(0.95, "Drop masks whose stability score is below this",
                                     low=0.0, high=1.0, dynamic=True)
    stability_offset: float = _param(1.0, "Logit offset of the stability score", low=0.0, high=10.0,
                                     dynamic=True)
    mask_threshold: float = _param(0.0, "Logit threshold that binarises a mask", low=-10.0, high=10.0,
                                   dynamic=True)
    nms_thresh: float = _param(0.7, "Box IoU above which the lower-scoring mask is suppressed",
                               low=0.0, high=1.0, dynamic=True)
    min_area: int = _param(100, "Drop masks smaller than this many pixels (input resolution)",
                           low=0, high=100_000_000, dynamic=True)
    reject_edge_masks: bool = _param(False, "Drop masks that touch the image border", dynamic=True)
    max_objects: int = _param(100, "Keep at most this many masks, best first", low=1, high=1000,
                              dynamic=True)
    max_decode_memory_mb: int = _param(
        2048, "Memory cap of one batched decoder call; prompts are chunked only above it (MobileSAM: ~5 MB per "
        "prompt in fp32 on a CPU, ~9 MB on a GPU or with several views, half in fp16/bf16; on a GPU 20% of the "
        "cap is left to the caching allocator)",
        low=64, high=1_000_000, dynamic=True)

    # --- segment-anything AMG: outputs, crops, scales, small regions, adaptive density -------
    multimask_output: bool = _param(True, "Decode the three multimask outputs of every prompt (off: the single-mask "
                                    "output only, fewer and coarser masks)", dynamic=True)
    point_grids: str = _param("", "JSON file of custom point grids, a list over crop layers of [[x, y], ...] in [0, 1] "
                              "(x right, y down); replaces grid_size and crop_n_points_downscale_factor; '' = regular "
                              "grids", dynamic=True)
    crop_n_layers: int = _param(0, "Also segment crops of the frame: layer i adds 2^i x 2^i overlapping crops, each "
                                "encoded at full model resolution (finds small objects; one encoder pass per crop)",
                                low=0, high=4, dynamic=True)
    crop_overlap_ratio: float = _param(512 / 1500, "Overlap of neighbouring crops of the first layer, as a fraction of "
                                       "the frame's shorter side (halved per further layer)", low=0.0, high=0.9,
                                       dynamic=True)
    crop_nms_thresh: float = _param(0.7, "Box IoU above which a mask is suppressed by one from a smaller crop or "
                                    "finer scale", low=0.0, high=1.0, dynamic=True)
    crop_n_points_downscale_factor: int = _param(1, "Points per side in crop layer i are grid_size / factor^i",
                                                 low=1, high=16, dynamic=True)
    scales: str = _param("", "Multi-scale generation: comma-separated zoom factors besides 1, e.g. '0.5,1.5' (s > 1 "
                         "tiles the frame with ceil(s)^2 crops of 1/s its size; s < 1 shows the frame at s times the "
                         "model resolution); '' = off", dynamic=True)
    max_encoder_batch: int = _param(4, "Views (the frame, its crops and scales) per batched image-encoder call",
                                    low=1, high=64, dynamic=True)
    min_mask_region_area: int = _param(0, "Fill holes and remove islands smaller than this many pixels in each kept "
                                       "mask (OpenCV connected components), then rerun NMS; 0 = off",
                                       low=0, high=100_000_000, dynamic=True)
    exact_mask_boxes: bool = _param(True, "Measure the boxes that NMS and the crop-edge filter use on exactly upsampled "
                                    "masks (segment-anything's choices; on a CPU ~0.5 ms per candidate, over its own "
                                    "window); false = from the low-res masks, cheaper, may keep a different one of two "
                                    "near-duplicates",
                                    dynamic=True)
    adaptive_density: bool = _param(False, "Grid prompts: decode the grid_size grid first, then points of a denser "
                                    "grid only where its masks leave the frame uncovered or overlap heavily (with crop "
                                    "layers or scales, in every view by that view's own masks)",
                                    dynamic=True)
    adaptive_dense_grid: int = _param(32, "Adaptive density: points per side of the dense grid", low=2, high=128,
                                      dynamic=True)
    adaptive_overlap: int = _param(3, "Adaptive density: dense points also go where at least this many distinct "
                                   "sparse masks overlap (a complex region)", low=2, high=100, dynamic=True)

    # --- depth fusion ----------------------------------------------------------------------
    use_depth: bool = _param(True, "Fuse masks with the aligned depth image into 3D objects")
    depth_scale: float = _param(0.001, "Metres per unit of integer (16UC1) depth; 32FC1 is metres",
                                low=1e-6, high=1.0, dynamic=True)
    min_depth: float = _param(0.1, "Depth below this (m) is invalid", low=0.0, high=100.0, dynamic=True)
    max_depth: float = _param(10.0, "Depth above this (m) is invalid", low=0.0, high=1000.0,
                              dynamic=True)
    erosion_px: int = _param(1, "Pixels eroded from each mask edge before using its depth (flying pixels)",
                             low=0, high=50, dynamic=True)
    min_valid_points: int = _param(30, "Objects with fewer valid depth points (on the scene_stride grid) are flagged "
                                   "invalid",
                                   low=1, high=1_000_000, dynamic=True)
    target_frame: str = _param("", "Express objects in this TF frame (e.g. base_link, map; z up) using /tf and "
                               "/tf_static; '' = the camera's optical frame")

    # --- scene: structure, refined masks, parts, support -------------------------------------
    scene_stride: int = _param(2, "The scene stage (planes, refinement, fusion) uses every n-th pixel of each row "
                               "and column; 1 = all pixels", low=1, high=8, dynamic=True)
    depth_sigma_at_1m: float = _param(0.002, "Depth noise sigma (m) at 1 m; it grows with z^2 (stereo, structured "
                                      "light)", low=0.0, high=0.1, dynamic=True)
    plane_band_sigmas: float = _param(3.0, "A point within this many depth-noise sigmas of a plane lies on it",
                                      low=0.5, high=20.0, dynamic=True)
    plane_min_band: float = _param(0.01, "Narrowest plane band (m), for near points", low=0.0, high=0.5,
                                   dynamic=True)
    plane_min_extent: float = _param(0.7, "A plane is structure (floor, wall, table top) when its largest connected "
                                     "patch is at least this long (m)", low=0.05, high=100.0, dynamic=True)
    max_planes: int = _param(6, "Most structure planes found per frame", low=0, high=20, dynamic=True)
    structure_fraction: float = _param(0.7, "A mask with at least this fraction of its depth on one structure plane "
                                       "is structure, not an object", low=0.0, high=1.0, dynamic=True)
    depth_jump_ratio: float = _param(0.04, "Neighbouring pixels whose depths differ by more than this fraction are "
                                     "on two sides of a discontinuity (object masks are cut there)",
                                     low=0.001, high=1.0, dynamic=True)
    part_containment: float = _param(0.85, "A mask with at least this fraction of its pixels inside a larger mask "
                                     "is its part", low=0.5, high=1.0, dynamic=True)
    fuse_parts: bool = _param(False, "Also make parts (masks inside a larger object mask) 3D objects",
                              dynamic=True)
    support_tolerance: float = _param(0.03, "An object rests on a plane or object whose top is within this (m, plus "
                                      "the plane band) of its bottom", low=0.0, high=1.0, dynamic=True)
    publish_structure: bool = _param(False, "Also put structure (floor, walls, table tops) on ~/objects; it always "
                                     "goes on ~/structure", dynamic=True)
    max_object_size: float = _param(3.0, "An object whose box is longer than this (m) on any side is background (a "
                                    "mask across a wall and the floor), flagged not valid; 0 = no limit",
                                    low=0.0, high=100.0, dynamic=True)

    # --- tracking --------------------------------------------------------------------------
    track_max_distance: float = _param(0.3, "Max 3D centroid distance (m) to keep an object's id (widened by an "
                                       "unseen object's speed, to twice this)", low=0.0, high=10.0, dynamic=True)
    track_min_iou: float = _param(0.1, "Min mask IoU to keep an object's id without depth",
                                  low=0.0, high=1.0, dynamic=True)
    track_max_age: int = _param(10, "Frames an unseen object keeps its id (it must look as it did to get it back)",
                                low=0, high=1000, dynamic=True)
    track_smoothing: float = _param(0.0, "Weight of the past in each track's smoothed centroid and box (0 = none)",
                                    low=0.0, high=0.95, dynamic=True)
    track_smoothing_gate: float = _param(0.1, "A centroid that moved farther than this (m) from the smoothed one "
                                         "restarts the smoothing", low=0.0, high=10.0, dynamic=True)

    # --- input -------------------------------------------------------------------------------
    image_transport: str = _param("raw", "Colour topic transport: raw = sensor_msgs/Image on 'image'; compressed = "
                                  "sensor_msgs/CompressedImage (jpeg/png) on 'image/compressed', as image_transport "
                                  "names it", choices=("raw", "compressed"))

    # --- synchronisation -------------------------------------------------------------------
    sync_slop: float = _param(0.05, "Max stamp difference (s) between colour, depth and camera info",
                              low=0.0, high=10.0)
    sync_queue_size: int = _param(10, "Messages kept per topic while matching stamps", low=1, high=1000)

    # --- node: lifecycle, QoS, diagnostics -------------------------------------------------------
    autostart: bool = _param(True, "Configure and activate the lifecycle node at start-up; false = wait for a "
                             "lifecycle manager (change_state)")
    qos_input_reliability: str = _param("best_effort", "Reliability of the image, depth and camera_info "
                                        "subscriptions; best_effort also matches reliable publishers",
                                        choices=("best_effort", "reliable"))
    qos_input_depth: int = _param(5, "History depth of each input subscription", low=1, high=100)
    qos_results_reliability: str = _param("reliable", "Reliability of masks, objects and markers (small): "
                                          "reliable reaches reliable and best-effort subscribers",
                                          choices=("best_effort", "reliable"))
    qos_results_depth: int = _param(10, "History depth of masks, objects and markers", low=1, high=100)
    qos_images_reliability: str = _param("reliable", "Reliability of the overlay and label image (~1 MB each): "
                                         "reliable reaches both kinds of subscriber; best_effort never resends "
                                         "on a lossy link", choices=("best_effort", "reliable"))
    qos_images_depth: int = _param(1, "History depth of the overlay and label image", low=1, high=100)
    qos_points_reliability: str = _param("reliable", "Reliability of the object point cloud; as the images",
                                         choices=("best_effort", "reliable"))
    qos_points_depth: int = _param(1, "History depth of the object point cloud", low=1, high=100)
    diagnostics_window_s: float = _param(5.0, "Sliding window (s) of the diagnostics' FPS, rates, latency "
                                         "percentiles and level", low=0.5, high=600.0)
    no_input_warn_s: float = _param(2.0, "Diagnostics warn when no input message arrived for this long (s)",
                                    low=0.1, high=3600.0)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            _check_value(f, getattr(self, f.name))
        parse_scales(self.scales)
        if self.min_depth >= self.max_depth:
            raise ValueError(f"min_depth ({self.min_depth}) must be below max_depth ({self.max_depth})")

    def replace(self, **changes: Any) -> "SamRosConfig":
        """A validated copy with ``changes``; unknown names and bad values raise ValueError."""
        unknown = set(changes) - set(field_names())
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        coerced = {name: coerce(name, value) for name, value in changes.items()}
        return dataclasses.replace(self, **coerced)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "SamRosConfig":
        return cls().replace(**dict(values))

    @classmethod
    def from_yaml(cls, path: str | Path, node_name: str = "sam_node") -> "SamRosConfig":
        """Read a plain mapping or a ROS 2 params file (``node: ros__parameters: {...}``)."""
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        for key in (node_name, f"/{node_name}", "/**"):
            section = data.get(key)
            if isinstance(section, dict) and "ros__parameters" in section:
                return cls.from_mapping(section["ros__parameters"] or {})
        return cls.from_mapping(data)


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(SamRosConfig)]


@dataclass(frozen=True)
class FieldInfo:
    """What a ROS parameter descriptor or a CLI option needs to know about one field."""

    name: str
    type: type
    default: Any
    description: str
    low: Any
    high: Any
    choices: tuple | None
    dynamic: bool


def fields_info() -> Iterator[FieldInfo]:
    for f in dataclasses.fields(SamRosConfig):
        meta = f.metadata
        yield FieldInfo(f.name, _field_type(f), f.default, meta["description"], meta["low"],
                        meta["high"], meta["choices"], meta["dynamic"])


def params_file_text(node_name: str = "sam_node") -> str:
    """``config/sam_ros.yaml``: every field with its default, description and range, as a ROS params file."""
    lines = ["# sam_ros node parameters (ros2 run/launch ... --ros-args --params-file config/sam_ros.yaml).",
             "# Every field of sam_ros.config.SamRosConfig; ranges are enforced by the node. "
             "(dynamic) = settable at run time.", f"{node_name}:", "  ros__parameters:"]
    for info in fields_info():
        bounds = (f" [{'|'.join(info.choices)}]" if info.choices else
                  f" [{info.low} .. {info.high}]" if info.low is not None else "")
        value = json.dumps(info.default) if not isinstance(info.default, bool) else str(info.default).lower()
        lines += [f"    # {info.description}{bounds}{' (dynamic)' if info.dynamic else ''}",
                  f"    {info.name}: {value}"]
    return "\n".join(lines) + "\n"


def coerce(name: str, value: Any) -> Any:
    """Convert ``value`` to the field's type where that is lossless (int -> float, '3' -> 3)."""
    f = {f.name: f for f in dataclasses.fields(SamRosConfig)}[name]
    kind = _field_type(f)
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true/false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return value


def _field_type(f: dataclasses.Field) -> type:
    return {"str": str, "int": int, "float": float, "bool": bool}[f.type]


def _check_value(f: dataclasses.Field, value: Any) -> None:
    kind = _field_type(f)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if type(value) is not kind:
        raise ValueError(f"{f.name}: expected {kind.__name__}, got {value!r}")
    meta = f.metadata
    if kind is float and value != value:
        raise ValueError(f"{f.name}: NaN is not allowed")
    if meta["low"] is not None and value < meta["low"]:
        raise ValueError(f"{f.name}: {value} is below the minimum {meta['low']}")
    if meta["high"] is not None and value > meta["high"]:
        raise ValueError(f"{f.name}: {value} is above the maximum {meta['high']}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise ValueError(f"{f.name}: {value!r} is not one of {', '.join(meta['choices'])}")


def parse_scales(text: str) -> tuple[float, ...]:
    """'0.5, 1, 1.5' -> (0.5, 1.0, 1.5); '' -> (). Raises ValueError for anything else."""
    if not text.strip():
        return ()
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"scales: expected comma-separated numbers like '0.5,1,1.5', got {text!r}") from None
    if not all(0.25 <= s <= 4 for s in scales):
        raise ValueError(f"scales: each zoom factor must be within 0.25 .. 4, got {text!r}")
    return scales
