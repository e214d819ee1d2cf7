"""Interpolation benchmark: keyrender's flow backend vs ffmpeg's minterpolate vs a cross-fade.

On real footage: keep every k-th frame, interpolate the k-1 frames between each pair, and compare
with the real frames (PSNR, SSIM). ffmpeg's motion-compensated `minterpolate`
(mi_mode=mci:mc_mode=aobmc:me_mode=bidir) gets the same decimated clip at fps/k and is asked for
fps; its output frame j is aligned with real frame j (checked: the kept frames come back in place,
and a cross-fade sanity clip is reproduced at the right phase). Everything runs on the same CPU in
the same run.

Timing: ours = wall time of `inbetween(...)` for every pair (flow, warping, blending; the pair
guard included), frames already decoded in memory, metrics excluded. OpenCV spreads DIS and the
warps over the CPU's cores while minterpolate runs on one, so CPU time (ours: this process's;
minterpolate: the ffmpeg process's) is reported next to wall time. minterpolate = wall time of
the ffmpeg process reading raw RGB frames from a file and writing raw RGB frames to a file, minus
the wall time of the same ffmpeg command with the filter replaced by `null` (process start-up,
raw I/O and colour conversion removed, which favours minterpolate).

Footage: `tree.avi` from the shared bench data, and `vtest.avi` (pedestrians seen by a still
camera, 768x576, 10 fps; OpenCV's sample data from Debian's opencv-doc package, the same source
as tree.avi) when it is present (`make bench-data` fetches it into benchmarks/data/).

Note on tree.avi: the AVI has 444 frame slots at 15 fps but only 68 coded frames (the others are
dropped-frame slots that repeat the previous picture). The benchmark uses the 68 distinct frames
as the clip (the real motion between them is larger than between 15 fps slots).

Camera-move suite: keyframes that are exact views of real photographs (scikit-image's data
photos, the Middlebury frames of the bench data), 24 frames apart; the truth at t is the view
carried by H^t (the camera at constant velocity, `keyrender.interpolate.camera.CameraPath`),
rendered from the photograph. Cut clip: segments of different footage back to back, keyframes
every 8 frames; a pair that straddles a joint must be a cut, no other pair may be (the flow
backend with `detect_cuts=True`, as `keyrender interpolate VIDEO --factor K` retimes footage; the
other parts measure keyframe spans, which are continuous: no pair may be a cut there).

    python benchmarks/interpolation.py                      # tree.avi, and vtest.avi if fetched
    python benchmarks/interpolation.py --suite footage --gaps 8,16,24 --clips vtest   # one part
    python benchmarks/interpolation.py --suite camera       # the camera-move suite only
    python benchmarks/interpolation.py --suite cuts         # the cut clip only
    python benchmarks/interpolation.py --video clip.mp4 --k 2 --k 4 --limit 200 --preset fast
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if __package__ in (None, ""):
    # run as a script from a checkout: make `keyrender` importable
    try:
        import keyrender  # noqa: F401
    except ImportError:  # pragma: no cover
        sys.path.insert(0, str(REPO.parent))

from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from keyrender.interpolate import inbetween  # noqa: E402
from keyrender.interpolate.flow import FlowInterpolator, cross_fade  # noqa: E402

DATA = Path(os.environ.get("KEYRENDER_BENCH_DATA", "/work/shared/bench-data"))
EXTRA = [HERE / "data" / "vtest.avi", Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")]
MINTERP = "minterpolate=fps={fps}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir"


def decode_distinct(path: Path, limit: int | None) -> tuple[list[np.ndarray], float]:
    """Decode a video with PyAV into RGB frames (coded frames only) and return (frames, fps)."""
    import av

    frames = []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fps = float(s.average_rate or 15)
        for f in c.decode(s):
            frames.append(f.to_ndarray(format="rgb24"))
            if limit and len(frames) >= limit:
                break
    return frames, fps


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_ffmpeg(frames: list[np.ndarray], k: int, vf: str, tmp: Path) -> tuple[list[np.ndarray], float, float]:
    """Feed `frames` (raw RGB, rate 1) through `vf`; return (output frames, wall seconds, CPU
    seconds of the ffmpeg process)."""
    h, w = frames[0].shape[:2]
    src = tmp / "in.rgb"
    dst = tmp / "out.rgb"
    src.write_bytes(b"".join(np.ascontiguousarray(f).tobytes() for f in frames))
    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", "1", "-i", str(src),
        "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24", str(dst),
    ]
    t0, c0 = time.perf_counter(), _children_cpu()
    subprocess.run(cmd, check=True)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    data = np.frombuffer(dst.read_bytes(), np.uint8)
    n = data.size // (h * w * 3)
    return list(data[: n * h * w * 3].reshape(n, h, w, 3)), wall, cpu


def minterpolate(keys: list[np.ndarray], k: int, tmp: Path) -> tuple[list[np.ndarray], float, float]:
    """minterpolate the keyframes (rate 1) to rate k; output j is at input time j / k. Returns
    the frames and the filter's wall and CPU time (ffmpeg's minus a passthrough run's).

    minterpolate stops one input frame early (5 inputs at k=2 give 7 outputs, not 9), so the last
    keyframe is fed twice; outputs past the last real keyframe are ignored."""
    keys = list(keys) + [keys[-1]]
    vf = "format=yuv444p," + MINTERP.format(fps=k) + ",format=rgb24"
    out, wall, cpu = run_ffmpeg(keys, k, vf, tmp)
    _, base, base_cpu = run_ffmpeg(keys, k, f"format=yuv444p,fps={k},format=rgb24", tmp)
    return out, max(wall - base, 1e-9), max(cpu - base_cpu, 1e-9)


def psnr(x: np.ndarray, y: np.ndarray) -> float:
    return float(peak_signal_noise_ratio(y, x, data_range=255))


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    return float(structural_similarity(y, x, channel_axis=2, data_range=255))


def sanity_alignment(tmp: Path) -> str:
    """A cross-fade clip (a still image whose brightness ramps linearly) through minterpolate at
    k=2: its output j must match the ramp at j. Returns a line for the report; raises if misaligned."""
    rng = np.random.default_rng(1)
    img = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (0, 0), 2).astype(np.float32)
    k = 2
    full = [np.clip(img * (0.5 + 0.05 * i), 0, 255).astype(np.uint8) for i in range(9)]
    keys = full[::k]
    out, _, _ = minterpolate(keys, k, tmp)
    if len(out) < len(full):
        raise RuntimeError(f"minterpolate returned {len(out)} frames for {len(full)}")
    aligned = np.mean([psnr(out[j], full[j]) for j in range(1, len(full) - 1, 2)])
    shifted = np.mean([psnr(out[j + 1], full[j]) for j in range(1, len(full) - 2, 2)])
    if aligned < shifted:
        raise RuntimeError(f"minterpolate alignment check failed: aligned {aligned:.1f} dB < shifted {shifted:.1f} dB")
    return f"alignment check (brightness ramp, k=2): minterpolate frame j vs truth j {aligned:.1f} dB, vs j+1 {shifted:.1f} dB"


def interpolate_keys(keys: list[np.ndarray], k: int, interp) -> tuple[dict[int, np.ndarray], float, float, dict, list[dict]]:
    """keyrender's k - 1 in-betweens of every pair of `keys` (k frames apart): frame index -> frame,
    wall and CPU seconds spent in them, the pairs' modes counted, and each pair's info."""
    from keyrender.interpolate import inbetween

    times = [j / k for j in range(1, k)]
    frames: dict[int, np.ndarray] = {}
    modes: dict[str, int] = {}
    infos: list[dict] = []
    wall = cpu = 0.0
    for p in range(len(keys) - 1):
        info: dict = {}
        t0, c0 = time.perf_counter(), time.process_time()
        outs = list(inbetween(keys[p], keys[p + 1], times, backend=interp, info=info))
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        modes[info["mode"]] = modes.get(info["mode"], 0) + 1
        infos.append(info)
        for j, f in enumerate(outs, 1):
            frames[p * k + j] = f
    return frames, wall, cpu, modes, infos


def bench_clip(frames: list[np.ndarray], k: int, interp: FlowInterpolator, tmp: Path) -> dict:
    last = (len(frames) - 1) // k * k
    keys = frames[: last + 1 : k]
    truth_idx = [i for i in range(last + 1) if i % k]
    ours, t_ours, c_ours, modes, _ = interpolate_keys(keys, k, interp)
    fade = {p * k + j: cross_fade(keys[p], keys[p + 1], j / k) for p in range(len(keys) - 1) for j in range(1, k)}
    mi_frames, t_mi, c_mi = minterpolate(keys, k, tmp)
    if len(mi_frames) <= last:
        raise RuntimeError(f"minterpolate returned {len(mi_frames)} frames, need {last + 1}")
    keys_back = np.mean([psnr(mi_frames[i], frames[i]) for i in range(0, last + 1, k) if i < len(mi_frames)])
    n = len(truth_idx)
    res = {"k": k, "n": n, "keys": len(keys), "modes": modes, "minterp_keys_psnr": keys_back}
    for name, src in (("keyrender flow", ours), ("minterpolate", dict(enumerate(mi_frames))), ("cross-fade", fade)):
        ps = [psnr(src[i], frames[i]) for i in truth_idx]
        ss = [ssim(src[i], frames[i]) for i in truth_idx]
        res[name] = {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "psnr_all": ps}
    res["keyrender flow"]["ms"] = 1000 * t_ours / n
    res["minterpolate"]["ms"] = 1000 * t_mi / n
    res["keyrender flow"]["cpu_ms"] = 1000 * c_ours / n
    res["minterpolate"]["cpu_ms"] = 1000 * c_mi / n
    return res


CAM_W, CAM_H = 320, 180
# name: (view A, view B) as (centre x, centre y, width in photo px, roll degrees), relative to the
# photo: centre as a fraction of its size, width as a fraction of its width
CAMERA_CASES = {
    "pan 15%": ((0.40, 0.5, 0.45, 0), (0.40 + 0.15 * 0.45, 0.5, 0.45, 0)),
    "pan 35%": ((0.35, 0.5, 0.42, 0), (0.35 + 0.35 * 0.42, 0.5, 0.42, 0)),
    "pan 55%": ((0.32, 0.5, 0.38, 0), (0.32 + 0.55 * 0.38, 0.5, 0.38, 0)),
    "tilt 30%": ((0.5, 0.40, 0.45, 0), (0.5, 0.40 + 0.3 * 0.45 * 9 / 16 * 1.0, 0.45, 0)),
    "zoom in 1.5x": ((0.5, 0.5, 0.6, 0), (0.5, 0.5, 0.4, 0)),
    "zoom in 2.5x": ((0.5, 0.5, 0.75, 0), (0.5, 0.5, 0.3, 0)),
    "zoom out 2.5x": ((0.5, 0.5, 0.3, 0), (0.5, 0.5, 0.75, 0)),
    "roll 15 deg": ((0.5, 0.5, 0.5, 0), (0.5, 0.5, 0.5, 15)),
    "pan 30% + zoom 1.5x": ((0.40, 0.5, 0.5, 0), (0.40 + 0.3 * 0.5, 0.5, 0.5 / 1.5, 0)),
}


def _view_matrix(photo: np.ndarray, cx: float, cy: float, width: float, roll: float) -> np.ndarray:
    """Photo -> frame for a CAM_W x CAM_H view (relative centre and width, roll in degrees)."""
    ph, pw = photo.shape[:2]
    cx, cy, width = cx * pw, cy * ph, width * pw
    s = CAM_W / width
    c, sn = np.cos(np.radians(roll)), np.sin(np.radians(roll))
    return (np.array([[1, 0, (CAM_W - 1) / 2], [0, 1, (CAM_H - 1) / 2], [0, 0, 1.0]]) @ np.diag([s, s, 1.0])
            @ np.array([[c, -sn, 0], [sn, c, 0], [0, 0, 1.0]]) @ np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1.0]]))


def _render_view(photo: np.ndarray, m: np.ndarray) -> np.ndarray:
    return cv2.warpPerspective(photo, m, (CAM_W, CAM_H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def camera_photos() -> dict[str, np.ndarray]:
    from skimage import data

    out = {n: getattr(data, n)() for n in ("astronaut", "coffee", "rocket", "chelsea")}
    for n in ("rubberwhale1", "basketball1"):
        p = DATA / f"{n}.png"
        if p.exists():
            out[n[:-1]] = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
    return out


def camera_suite(interp: FlowInterpolator, tmp: Path, k: int = 24) -> list[dict]:
    """Every camera case on every photo: ours, minterpolate and a cross-fade against the exact views."""
    from keyrender.interpolate.camera import CameraPath

    times = [j / k for j in range(1, k)]
    rows = []
    for pname, photo in camera_photos().items():
        for case, (va, vb) in CAMERA_CASES.items():
            ma, mb = _view_matrix(photo, *va), _view_matrix(photo, *vb)
            path = CameraPath(mb @ np.linalg.inv(ma))
            a, b = _render_view(photo, ma), _render_view(photo, mb)
            truth = [_render_view(photo, path.at(t) @ ma) for t in times]
            info: dict = {}
            t0 = time.perf_counter()
            ours = list(inbetween(a, b, times, backend=interp, info=info))
            dt = time.perf_counter() - t0
            mi, t_mi, _ = minterpolate([a, b], k, tmp)
            fade = [cross_fade(a, b, t) for t in times]
            r = {"photo": pname, "case": case, "mode": info["mode"], "model": (info.get("camera") or {}).get("model"),
                 "ms": 1000 * dt / len(times), "mi_ms": 1000 * t_mi / len(times)}
            for name, src in (("ours", ours), ("minterpolate", mi[1:k]), ("fade", fade)):
                r[name] = float(np.mean([psnr(x, y) for x, y in zip(src, truth)]))
                r[name + "_ssim"] = float(np.mean([ssim(x, y) for x, y in zip(src, truth)]))
            rows.append(r)
    return rows


def cut_clip(videos: list[Path], k: int, interp: FlowInterpolator, seg: int = 4) -> dict:
    """Segments of `seg` keyframe gaps of each clip in turn (resized to the first's size), twice
    round: keyframes every k frames; count the cuts found at the joints and elsewhere."""
    clips = []
    for v in videos:
        f, _ = decode_distinct(v, seg * k * 2 + 1)
        clips.append(f)
    h, w = clips[0][0].shape[:2]
    frames, joints = [], set()
    for rnd in range(2):
        for c in clips:
            part = c[rnd * seg * k : (rnd + 1) * seg * k]
            if len(part) < seg * k:
                part = c[: seg * k]
            if frames:
                joints.add(len(frames))
            frames += [cv2.resize(x, (w, h), interpolation=cv2.INTER_AREA) for x in part]
    keys = list(range(0, len(frames), k))
    found = wrong = missed = 0
    for i0, i1 in zip(keys, keys[1:]):
        info: dict = {}
        list(inbetween(frames[i0], frames[i1], [0.5], backend=interp, info=info))
        straddles = any(i0 < j <= i1 for j in joints)
        if straddles and info["mode"] == "cut":
            found += 1
        elif straddles:
            missed += 1
        elif info["mode"] == "cut":
            wrong += 1
    return {"pairs": len(keys) - 1, "cuts": len(joints), "found": found, "missed": missed, "in_shot_as_cut": wrong}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", type=Path, action="append",
                    help="footage (repeatable; default tree.avi, and vtest.avi when fetched)")
    ap.add_argument("--k", type=int, action="append", help="keep every k-th frame (repeatable; default 2 4 8 16 24)")
    ap.add_argument("--gaps", help="keyframe gaps, comma separated (as --k): --gaps 8,16,24")
    ap.add_argument("--clips", help="only the footage whose file name starts with one of these (comma separated)")
    ap.add_argument("--suite", action="append", choices=("footage", "camera", "cuts"),
                    help="run only these parts (repeatable; default: all three)")
    ap.add_argument("--no-camera-suite", action="store_true", help="skip the camera-move suite and the cut clip")
    ap.add_argument("--limit", type=int, default=241, help="use at most this many frames per clip (0: all)")
    ap.add_argument("--preset", default="medium", help="DIS preset of the flow backend (library default: medium)")
    ap.add_argument("--flow-max-side", type=int, default=640)
    ap.add_argument("--threads", type=int, default=0, help="OpenCV threads (0: OpenCV's default)")
    ap.add_argument("--worst", type=int, default=3, help="list the N worst frames (where motion defeats it)")
    args = ap.parse_args(argv)
    try:
        ks = (args.k or []) + [int(g) for g in (args.gaps or "").split(",") if g.strip()] or [2, 4, 8, 16, 24]
    except ValueError:
        ap.error(f"--gaps: expected comma-separated integers, got {args.gaps!r}")
    if any(k < 2 for k in ks):
        ap.error("--k/--gaps: a keyframe gap must be at least 2")
    suites = set(args.suite or ("footage", "camera", "cuts"))
    if args.no_camera_suite:
        suites -= {"camera", "cuts"}
    videos = args.video or [DATA / "tree.avi"] + [p for p in EXTRA if p.is_file()][:1]
    all_videos = list(videos)
    if args.clips:
        names = [c.strip() for c in args.clips.split(",") if c.strip()]
        videos = [v for v in videos if any(v.name.startswith(n) for n in names)]
        if not videos:
            ap.error(f"--clips {args.clips!r}: matches none of {', '.join(v.name for v in all_videos)}")
    if shutil.which("ffmpeg") is None:
        print("ffmpeg not found: apt-get install -y ffmpeg", file=sys.stderr)
        return 2
    for v in videos:
        if not v.is_file():
            print(f"{v}: no such video", file=sys.stderr)
            return 2
    if args.threads:
        cv2.setNumThreads(args.threads)
    interp = FlowInterpolator(preset=args.preset, flow_max_side=args.flow_max_side)
    print(f"# Interpolation benchmark: preset={args.preset}, flow_max_side={args.flow_max_side}, "
          f"CPU threads={cv2.getNumThreads()}, os.cpu_count={os.cpu_count()}\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="kr-bench-") as td:
        tmp = Path(td)
        print(sanity_alignment(tmp))
        for video in videos if "footage" in suites else []:
            frames, _ = decode_distinct(video, args.limit or None)
            h, w = frames[0].shape[:2]
            print(f"\n{video.name}: {len(frames)} frames {w}x{h}")
            for k in ks:
                r = bench_clip(frames, k, interp, tmp)
                r["clip"] = video.name
                print(f"k={k}: {r['keys']} kept frames, {r['n']} interpolated; pair modes {r['modes']}; "
                      f"minterpolate's kept frames vs originals {r['minterp_keys_psnr']:.1f} dB")
                ours = r["keyrender flow"]
                worst = np.argsort(ours["psnr_all"])[: args.worst]
                truth = [i for i in range((len(frames) - 1) // k * k + 1) if i % k]
                print("  worst frames (index: ours / minterpolate dB): " + ", ".join(
                    f"{truth[i]}: {ours['psnr_all'][i]:.1f} / {r['minterpolate']['psnr_all'][i]:.1f}" for i in worst))
                rows.append(r)
            del frames
        mid = [(DATA / f"{n}1.png", DATA / f"{n}2.png") for n in ("rubberwhale", "basketball")]
        pair_lines = []
        for pa, pb in mid if "footage" in suites else []:
            if not pa.exists():
                continue
            a = cv2.cvtColor(cv2.imread(str(pa)), cv2.COLOR_BGR2RGB)
            b = cv2.cvtColor(cv2.imread(str(pb)), cv2.COLOR_BGR2RGB)
            info: dict = {}
            t0 = time.perf_counter()
            list(inbetween(a, b, [0.25, 0.5, 0.75], backend=interp, info=info))
            dt = (time.perf_counter() - t0) / 3
            pair_lines.append(f"{pa.stem[:-1]} {a.shape[1]}x{a.shape[0]}: mode {info['mode']}, {1000 * dt:.1f} ms per in-between (3 per pair)")
    if rows:
        print_footage(rows)
    if pair_lines:
        print("\nMiddlebury pairs (no ground-truth middle frame: speed and pair guard only):")
        for line in pair_lines:
            print("- " + line)
    if "camera" in suites:
        with tempfile.TemporaryDirectory(prefix="kr-bench-") as td:
            print_camera(camera_suite(interp, Path(td)))
    if "cuts" in suites:
        if len(all_videos) < 2:
            print("\ncut clip: needs two clips (vtest.avi missing? make bench-data)")
        else:
            # a clip with cuts is footage retimed, not keyframes of a shot: cut detection on
            cc = cut_clip(all_videos, 8, FlowInterpolator(preset=args.preset, flow_max_side=args.flow_max_side,
                                                           detect_cuts=True))
            print(f"\n## Cut clip ({' / '.join(v.name for v in all_videos)} segments back to back, keyframes every 8 frames): "
                  f"{cc['pairs']} pairs, {cc['cuts']} cuts: {cc['found']} found, {cc['missed']} missed, "
                  f"{cc['in_shot_as_cut']} in-shot pairs treated as cuts")
    return 0


def print_footage(rows: list[dict]) -> None:
    print()
    print("| clip | k | method | mean PSNR (dB) | mean SSIM | ms / interpolated frame | speed vs minterpolate "
          "| CPU ms / frame | CPU-time ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        mi = r["minterpolate"]
        for name in ("keyrender flow", "minterpolate", "cross-fade"):
            m = r[name]
            if "ms" in m:
                timing = (f"{m['ms']:.1f} | {mi['ms'] / m['ms']:.1f}x | {m['cpu_ms']:.1f} | "
                          f"{mi['cpu_ms'] / m['cpu_ms']:.1f}x")
            else:
                timing = "~0 |  | ~0 | "
            print(f"| {r['clip']} | {r['k']} | {name} | {m['psnr']:.2f} | {m['ssim']:.4f} | {timing} |")
    print()
    for r in rows:
        ours, mi = r["keyrender flow"], r["minterpolate"]
        print(f"{r['clip']} k={r['k']}: keyrender flow - minterpolate = {ours['psnr'] - mi['psnr']:+.2f} dB PSNR, "
              f"- cross-fade = {ours['psnr'] - r['cross-fade']['psnr']:+.2f} dB, pairs as cuts {r['modes'].get('cut', 0)}, "
              f"{mi['ms'] / ours['ms']:.1f}x minterpolate's speed (wall clock), "
              f"{mi['cpu_ms'] / ours['cpu_ms']:.1f}x in CPU time")


def print_camera(cam: list[dict]) -> None:
    print(f"\n## Camera-move suite: {len(cam)} keyframe pairs 24 frames apart, exact views of "
          f"{len({r['photo'] for r in cam})} photographs, {CAM_W}x{CAM_H}\n")
    print("| case | keyrender PSNR (min) | minterpolate | cross-fade | keyrender SSIM | pairs as cuts | models |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case in CAMERA_CASES:
        rs = [r for r in cam if r["case"] == case]
        models = ", ".join(sorted({str(r["model"]) for r in rs}))
        print(f"| {case} | {np.mean([r['ours'] for r in rs]):.2f} ({min(r['ours'] for r in rs):.2f}) | "
              f"{np.mean([r['minterpolate'] for r in rs]):.2f} | {np.mean([r['fade'] for r in rs]):.2f} | "
              f"{np.mean([r['ours_ssim'] for r in rs]):.4f} | {sum(r['mode'] == 'cut' for r in rs)} | {models} |")
    print(f"| **all** | {np.mean([r['ours'] for r in cam]):.2f} ({min(r['ours'] for r in cam):.2f}) | "
          f"{np.mean([r['minterpolate'] for r in cam]):.2f} | {np.mean([r['fade'] for r in cam]):.2f} | "
          f"{np.mean([r['ours_ssim'] for r in cam]):.4f} | {sum(r['mode'] == 'cut' for r in cam)} | |")
    worst = sorted(cam, key=lambda r: r["ours"])[:3]
    print("worst: " + "; ".join(f"{r['photo']} {r['case']} {r['ours']:.1f} dB ({r['mode']})" for r in worst))
    print(f"speed: {np.mean([r['ms'] for r in cam]):.1f} ms per in-between (minterpolate "
          f"{np.mean([r['mi_ms'] for r in cam]):.1f})")


if __name__ == "__main__":
    sys.exit(main())
