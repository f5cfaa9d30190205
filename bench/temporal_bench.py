"""Temporal prompts vs a full scan on every frame, on moving RGB-D sequences with exact ground truth.

    python bench/temporal_bench.py                       # 3 sequences x 16 frames, the shipped small model
    python bench/temporal_bench.py --sequences 5 --rescan-every 4 --aop

Each sequence has objects moving across the floor, one that leaves the view and one that enters it
mid-sequence (the renderer's rich sequences, or with ``--scenes classic`` ``moving_sequence``). Every frame goes through each configuration in turn (same frame,
same moment, so machine load hits all alike): a full grid-16 scan, and temporal prompts over the
grid (and over AoP with ``--aop``). Printed per configuration: per-frame recall@0.5 of the visible
objects, prompts and decode time per frame (median; and the mean's ratio, which counts the full scans
every ``rescan_every`` frames), how many frames after the entering object is
fully in view a mask finds it, and id switches of ground-truth objects. Then the bars.

Id switches are counted as CLEAR-MOT does (Bernardin & Stiefelhagen, 2008): each frame, a visible
ground-truth object stays matched to the track it was matched to before if that track's mask still
overlaps it at IoU >= 0.5; the others are matched one to one by IoU (>= 0.5, Hungarian); a switch is an
object's matched track id differing from its previous one. "id switches (objects)" matches against
what ``~/objects`` publishes (the frame's whole objects: not structure, not parts, whose ids a user
follows); "(all masks)" against every mask, parts included, as ``~/masks`` carries them. "best-mask
changes" is the count of earlier versions of this bench (the track of an object's single best mask
changing, whole/part alternation included), for comparison.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sam_ros.camera import PinholeCamera  # noqa: E402
from sam_ros.config import SamRosConfig  # noqa: E402
from sam_ros.cpu_features import cpu_flags, cpu_model  # noqa: E402
from sam_ros.model import BUNDLED_PARAMS  # noqa: E402
from sam_ros.pipeline import Segmenter  # noqa: E402
from sam_ros.scene.stage import OBJECT  # noqa: E402
from sam_ros.synthetic.noise import add_depth_noise, to_16uc1_mm  # noqa: E402
from sam_ros.synthetic.render import Intrinsics, render  # noqa: E402
from sam_ros.synthetic.rich import footprint, polygons_overlap  # noqa: E402
from sam_ros.synthetic.scene import OBJECT_TEXTURES, sample_scene  # noqa: E402

MIN_VISIBLE_PX = 400  # ground-truth objects smaller than this in a frame are not counted
HALF_FOV = 0.52       # tan of half the default camera's horizontal field of view
MAX_DRAWS = 200       # draws of a classic sequence's motion before giving up on a collision-free one


def rich_sequence(seed: int, frames: int):
    """The renderer's rich sequences (``render_rich_sequence``): static objects, a mover that crosses the
    view, one that leaves it and one that enters it, as (rgb, depth_mm, labels, ids, enterer) per frame."""
    from sam_ros.synthetic.sequence import render_rich_sequence

    sequence = render_rich_sequence(seed, frames)
    roles = sequence[0].scene.spec.extra["movers"]
    enterer = next(i for i, role in roles.items() if role == "enters")
    ids = [o.id for o in sequence[0].scene.spec.objects]
    return [(f.scene.rgb, f.depth_mm, f.scene.labels, ids, enterer) for f in sequence]


def moving_sequence(seed: int, frames: int, fps: float = 5.0):
    """The classic scenes, set in motion here: (rgb, depth_mm, labels, ids, enterer) per frame: movers, a
    leaver (the object nearest a side walks out by mid-sequence) and an enterer (walks in from the other
    side, fully in view after about a third). Solid objects do not pass through one another: a draw whose
    footprints overlap in any frame is drawn again (the first draw of each seed is kept when it is free)."""
    rng = np.random.default_rng(seed)
    for _ in range(MAX_DRAWS):
        spec, velocities, enterer_id = _draw_motion(rng, frames / fps)
        if not _collides(spec, velocities, frames, fps):
            break
    else:
        raise RuntimeError(f"seed {seed}: no draw of {MAX_DRAWS} moves its objects without collisions")
    out = []
    for index in range(frames):
        scene = render(spec.moved(velocities, dt=index / fps), Intrinsics.default())
        out.append((scene.rgb, to_16uc1_mm(add_depth_noise(scene.depth, rng)), scene.labels,
                    [o.id for o in spec.objects], enterer_id))
    return out


def _draw_motion(rng: np.random.Generator, duration: float):
    """A classic scene with its objects' floor velocities (m/s) and the enterer's id."""
    spec = sample_scene(rng, n_objects=(3, 5), depth_range=(1.3, 2.6))
    velocities = {o.id: tuple(float(v) for v in rng.uniform(-0.1, 0.1, 2)) for o in spec.objects}
    leaver = max(spec.objects, key=lambda o: abs(o.center[0]) / o.center[2])
    side = np.sign(leaver.center[0]) or 1.0
    exit_x = side * (HALF_FOV * leaver.center[2] + 0.35)
    velocities[leaver.id] = ((exit_x - leaver.center[0]) / (0.5 * duration), 0.0)
    z = float(rng.uniform(1.4, 2.2))
    template = spec.objects[int(rng.integers(len(spec.objects)))]
    start_x = -side * (HALF_FOV * z + 0.35)
    enter_x = -side * (HALF_FOV * z - 0.45)  # fully in view from here on
    enterer = replace(template, id=max(o.id for o in spec.objects) + 1, center=(start_x, template.center[1], z),
                      texture=OBJECT_TEXTURES[(OBJECT_TEXTURES.index(template.texture) + 1) % len(OBJECT_TEXTURES)],
                      tint=tuple(float(t) for t in rng.uniform(0.6, 1.2, 3)))
    velocities[enterer.id] = ((enter_x - start_x) / (duration / 3), 0.0)
    return replace(spec, objects=spec.objects + (enterer,)), velocities, enterer.id


def _collides(spec, velocities: dict, frames: int, fps: float) -> bool:
    """Whether any two objects' footprints on the floor overlap in any frame."""
    for index in range(frames):
        moved = spec.moved(velocities, dt=index / fps).objects
        feet = [footprint(o.shape, (o.center[0], o.center[2]), o.size, o.yaw) for o in moved]
        if any(polygons_overlap(a, b) for k, a in enumerate(feet) for b in feet[k + 1:]):
            return True
    return False


def best_matches(pred: np.ndarray, labels: np.ndarray, ids: list[int]) -> dict[int, tuple[int, float]]:
    """For each visible ground-truth object: (index of its best predicted mask, IoU)."""
    matches = {}
    flat = pred.reshape(len(pred), -1)
    areas = flat.sum(1)
    for object_id in ids:
        truth = (labels == object_id).ravel()
        if truth.sum() < MIN_VISIBLE_PX:
            continue
        if len(pred) == 0:
            matches[object_id] = (-1, 0.0)
            continue
        inter = flat[:, truth].sum(1)
        iou = inter / (areas + truth.sum() - inter)
        matches[object_id] = (int(iou.argmax()), float(iou.max()))
    return matches


def clear_mot_matches(pred: np.ndarray, labels: np.ndarray, ids: list[int], track_ids: list[int],
                      previous: dict[int, int]) -> dict[int, int]:
    """{ground-truth object: matched track id} for one frame, CLEAR-MOT style (see the module docstring):
    the previous correspondence is kept where its track's mask still has IoU >= 0.5, the rest one to one."""
    visible = [i for i in ids if (labels == i).sum() >= MIN_VISIBLE_PX]
    if not visible or len(pred) == 0:
        return {}
    flat = pred.reshape(len(pred), -1)
    truth = np.stack([(labels == i).ravel() for i in visible])
    inter = truth.astype(np.float32) @ flat.T.astype(np.float32)
    iou = inter / (truth.sum(1)[:, None] + flat.sum(1)[None, :] - inter)
    matches, taken = {}, set()
    column = {t: k for k, t in enumerate(track_ids)}
    for row, object_id in enumerate(visible):
        k = column.get(previous.get(object_id))
        if k is not None and iou[row, k] >= 0.5 and k not in taken:
            matches[object_id] = track_ids[k]
            taken.add(k)
    rows = [r for r, i in enumerate(visible) if i not in matches]
    cols = [k for k in range(len(track_ids)) if k not in taken]
    if rows and cols:
        sub = iou[np.ix_(rows, cols)]
        for r, c in zip(*linear_sum_assignment(-sub)):
            if sub[r, c] >= 0.5:
                matches[visible[rows[r]]] = track_ids[cols[c]]
    return matches


def count_switches(matches: dict[int, int], previous: dict[int, int]) -> int:
    """How many objects' matched track differs from their previous one; ``previous`` takes the new matches."""
    switches = sum(object_id in previous and previous[object_id] != track_id for object_id, track_id in matches.items())
    previous.update(matches)
    return switches


def fully_in_view(labels: np.ndarray, object_id: int) -> bool:
    mask = labels == object_id
    return mask.sum() >= MIN_VISIBLE_PX and not (mask[0].any() or mask[-1].any() or mask[:, 0].any()
                                                 or mask[:, -1].any())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--first", type=int, default=0, help="seed of the first sequence (others are held out)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--rescan-every", type=int, default=SamRosConfig().rescan_every)
    parser.add_argument("--checkpoint", default="bundled", help="'bundled' runs at its own thresholds (its params file)")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--aop", action="store_true", help="also temporal prompts over AoP")
    parser.add_argument("--scenes", choices=("rich", "classic"), default="rich",
                        help="the renderer's rich sequences, or classic scenes set in motion here")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = SamRosConfig.from_yaml(BUNDLED_PARAMS) if args.checkpoint == "bundled" else SamRosConfig()
    base = params.replace(checkpoint=args.checkpoint, device="cpu", dtype=args.dtype, grid_size=16,
                          rescan_every=args.rescan_every)
    modes = {"grid 16, every frame": base, "temporal (grid 16)": base.replace(temporal_prompts=True)}
    if args.aop:
        modes["temporal (AoP)"] = base.replace(temporal_prompts=True, prompt_mode="aop")
    stats = {name: {"recall": [], "decode": [], "prompts": [], "latency": [], "switches": 0, "mask_switches": 0,
                    "best_changes": 0, "objects": 0}
             for name in modes}
    camera = None
    for seed in range(args.first, args.first + args.sequences):
        sequence = (rich_sequence if args.scenes == "rich" else moving_sequence)(seed, args.frames)
        segmenters = {name: Segmenter(config) for name, config in modes.items()}
        assigned = {name: {} for name in modes}
        matched = {name: {} for name in modes}  # CLEAR-MOT: each object's last matched track id, among objects
        matched_masks = {name: {} for name in modes}  # ... among all masks
        found = {name: None for name in modes}
        appear = next((i for i, f in enumerate(sequence) if fully_in_view(f[2], f[4])), None)
        for index, (rgb, depth, labels, ids, enterer) in enumerate(sequence):
            camera = camera or PinholeCamera(rgb.shape[1], rgb.shape[0], Intrinsics.default().K)
            for name, segmenter in segmenters.items():
                frame = segmenter.run(rgb, depth, camera)
                result, s = frame.segmentation, stats[name]
                matches = best_matches(result.masks.numpy(), labels, ids)
                hits = {k: m for k, m in matches.items() if m[1] >= 0.5}
                s["recall"].append(len(hits) / max(len(matches), 1))
                s["decode"].append(result.timings_ms["decode_ms"])
                s["prompts"].append(result.num_prompts)
                for object_id, (mask_index, _) in hits.items():
                    history = assigned[name].setdefault(object_id, [])
                    history.append(frame.track_ids[mask_index])
                masks = result.masks.numpy()
                wholes = [k for k, o in enumerate(frame.objects) if o.kind == OBJECT and o.parent < 0]
                s["switches"] += count_switches(clear_mot_matches(masks[wholes], labels, ids, [frame.track_ids[k] for k in wholes],
                                                                  matched[name]), matched[name])
                s["mask_switches"] += count_switches(clear_mot_matches(masks, labels, ids, frame.track_ids,
                                                                       matched_masks[name]), matched_masks[name])
                if appear is not None and index >= appear and found[name] is None and enterer in hits:
                    found[name] = index - appear
        print(f"sequence {seed}: " + "; ".join(f"{name}: recall {100 * np.mean(stats[name]['recall'][-len(sequence):]):.0f}, "
                                          f"enterer after {found[name]}" for name in modes), flush=True)
        for name in modes:  # not found, and the sequence ended within rescan_every frames of its entry: no verdict
            open_ended = appear is None or len(sequence) - appear < args.rescan_every
            stats[name]["latency"].append("n/a" if found[name] is None and open_ended else found[name])
            for history in assigned[name].values():
                stats[name]["best_changes"] += sum(a != b for a, b in zip(history, history[1:]))
                stats[name]["objects"] += 1
    print(f"{args.sequences} {args.scenes} sequences (seeds {args.first}-{args.first + args.sequences - 1}) x {args.frames} frames, 640x480, CPU {args.dtype}, {args.threads} threads, "
          f"model {args.checkpoint}, rescan_every {args.rescan_every}; movers, a leaver and an enterer each")
    flags = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in cpu_flags())
    print(f"CPU {cpu_model()} ({os.cpu_count()} cores), flags: {flags}; load average at the end "
          f"{os.getloadavg()[0]:.1f} (decode times are ratios within this run)")
    print(f"{'configuration':<22} {'recall@0.5':>10} {'prompts/frame':>14} {'decode ms (median)':>19} "
          f"{'vs grid 16':>10} {'mean vs grid 16':>15} {'enterer found after (frames)':>29} {'id switches (objects)':>22} {'(all masks)':>12} {'best-mask changes':>18}")
    reference = statistics.median(stats["grid 16, every frame"]["decode"])
    mean_reference = np.mean(stats["grid 16, every frame"]["decode"])
    for name, s in stats.items():
        decode = statistics.median(s["decode"])
        latency = ", ".join("never" if x is None else str(x) for x in s["latency"])
        print(f"{name:<22} {100 * np.mean(s['recall']):>10.1f} {statistics.median(s['prompts']):>14.0f} "
              f"{decode:>19.0f} {decode / reference:>9.2f}x {np.mean(s['decode']) / mean_reference:>14.2f}x {latency:>29} "
              f"{s['switches']:>14} / {s['objects']:<5} {s['mask_switches']:>4} / {s['objects']:<5} {s['best_changes']:>10} / {s['objects']:<5}")
    full = stats["grid 16, every frame"]
    for name, s in stats.items():
        if name == "grid 16, every frame":
            continue
        gap = 100 * (np.mean(full["recall"]) - np.mean(s["recall"]))
        ratio = statistics.median(s["decode"]) / reference
        latency_ok = all(x == "n/a" or (x is not None and x <= args.rescan_every) for x in s["latency"])
        print(f"bars, {name}: recall within 2 points of grid 16: {'yes' if gap <= 2 else 'NO'} ({gap:+.1f}); "
              f"decode <= 0.3x: {'yes' if ratio <= 0.3 else 'NO'} ({ratio:.2f}x); enterer within rescan_every: "
              f"{'yes' if latency_ok else 'NO'}; 0 id switches: {'yes' if s['switches'] == 0 else 'NO'}")


if __name__ == "__main__":
    main()
