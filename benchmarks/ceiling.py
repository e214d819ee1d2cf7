"""What a two-frame flow interpolator can reach on the benchmark's footage: an oracle.

For each in-between of a keyframe gap, keyrender's flow backend sees only the keyframes A and B.
The oracle is also given the real frame T at time t, and measures the flows from T itself to A
and to B with the same machinery keyrender uses for A<->B (DIS at the same working size, the
SIFT-match hypothesis kept per pixel where it warps better, the consistency check and its
substitutes: `FlowPairState(T, A)`, `FlowPairState(T, B)`). Those flows are the best this family of
flow estimators can do for frame t; they are rendered through keyrender's own warp
(`render_time`) with:

- **oracle flow**: keyrender's blend weights ((1 - t) and t, each times the sample's visibility
  in the other frame and whether it falls inside the frame; no hedge): what the current warp and
  blend would give with the true motion to t;
- **oracle flow + oracle blend**: the same two warped keyframes, but each pixel takes whichever
  of A-warped and B-warped is closer to T (3x3 smoothed colour error): the most any per-pixel
  blend of the two warps can reach.

A third column splits keyrender's loss in two: **keyrender's flows + oracle blend** warps A and B
with keyrender's own flows to t (its pair state as the flow mode builds it: DIS, the SIFT matches
where `flow_suffices` says they are needed, every pair of this footage is in the flow mode) and
takes per pixel whichever warp is closer to T, as above. What it gains over keyrender is lost in
the blend (weights, occlusion, hedge); what the oracle flow gains over it is lost in the flow.

Rows print PSNR over the cross-fade (dB) on the same frames for the cross-fade, keyrender (library
defaults) and the oracles. Where even the oracle stays below a target, no interpolator that
warps and blends the two keyframes with this flow gets there.

    python benchmarks/ceiling.py                          # tree.avi and vtest.avi, k = 8 and 24
    python benchmarks/ceiling.py --clips vtest --gaps 8 --times 3

`--times N` evaluates N in-betweens per pair, evenly spaced (default 3: t = 1/4, 1/2, 3/4 of the
gap, rounded to frames); `--times 0` evaluates every in-between.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

# the benchmark module first: run from a checkout, it is what makes `keyrender` importable
from interpolation import DATA, EXTRA, decode_distinct, psnr

from keyrender.interpolate import inbetween  # noqa: E402
from keyrender.interpolate.camera import match_features  # noqa: E402
from keyrender.interpolate.flow import (  # noqa: E402
    FlowInterpolator, FlowPairState, cross_fade, flow_suffices, render_time, working_flows,
)
from keyrender.interpolate.flowcore import inside_frame  # noqa: E402


class _OracleState:
    """A pair state for `render_time` (`flow.PairState`): fixed flows from frame t to A and B (at a
    working resolution) and A's weight."""

    linear_edges = False

    def __init__(self, ft0, ft1, wa, size, grid):
        self.ft0, self.ft1, self.wa = ft0, ft1, wa
        self.size = size
        self.wsize = wa.shape
        self.gx, self.gy = grid

    def fields(self, t, hedge=0.0, hedge_level=50.0):
        return self.ft0, self.ft1, self.wa, None

    def fade_fields(self, t):
        return None


def _flow_from(truth: np.ndarray, key: np.ndarray, max_side: int) -> FlowPairState:
    """keyrender's flow machinery from the real frame to a keyframe (DIS + match hypothesis +
    consistency and substitutes); `.f01` is T -> key, `.c0` T's visibility in key."""
    m = match_features(truth, key, max_side)
    full = (m[0] / m[2], m[1] / m[2]) if m is not None else None
    return FlowPairState(truth, key, max_side=max_side, preset="medium", variational=1, camera=True, matches=full,
                         reversal=False)


def oracle(a: np.ndarray, b: np.ndarray, truth: np.ndarray, t: float, max_side: int = 640) -> dict[str, np.ndarray]:
    sa, sb = _flow_from(truth, a, max_side), _flow_from(truth, b, max_side)
    size = a.shape[:2]
    wh, ww = sa.wsize
    ft0, ft1 = sa.f01, sb.f01
    grid = (sa.gx, sa.gy)
    in_a = inside_frame(sa.gx + ft0[..., 0], sa.gy + ft0[..., 1], ww, wh)
    in_b = inside_frame(sa.gx + ft1[..., 0], sa.gy + ft1[..., 1], ww, wh)
    w_a = (1.0 - t) * (0.05 + sa.c0) * in_a + 1e-4
    w_b = t * (0.05 + sb.c0) * in_b + 1e-4
    wa = (w_a / (w_a + w_b)).astype(np.float32)
    out = {"oracle flow": render_time(a, b, _OracleState(ft0, ft1, wa, size, grid), t)}
    ia = render_time(a, b, _OracleState(ft0, ft1, np.ones_like(wa), size, grid), t).astype(np.float32)
    ib = render_time(a, b, _OracleState(ft0, ft1, np.zeros_like(wa), size, grid), t).astype(np.float32)
    out["oracle flow + oracle blend"] = _best_of(ia, ib, truth)
    return out


def _best_of(ia: np.ndarray, ib: np.ndarray, truth: np.ndarray) -> np.ndarray:
    tf = truth.astype(np.float32)
    ea = cv2.blur(np.abs(ia - tf).sum(2), (3, 3))
    eb = cv2.blur(np.abs(ib - tf).sum(2), (3, 3))
    return np.where((ea <= eb)[..., None], ia, ib).round().astype(np.uint8)


def our_state(a: np.ndarray, b: np.ndarray, max_side: int = 640) -> FlowPairState:
    """keyrender's still-camera pair state as `FlowInterpolator` builds it with its defaults."""
    flows = working_flows(a, b, max_side, "medium", 1)
    full = None
    if not flow_suffices(*flows):
        m = match_features(a, b, max_side)
        full = (m[0] / m[2], m[1] / m[2])
    return FlowPairState(a, b, max_side=max_side, preset="medium", variational=1, camera=True, matches=full, flows=flows)


def ours_oracle_blend(a: np.ndarray, b: np.ndarray, state: FlowPairState, truth: np.ndarray, t: float) -> np.ndarray:
    ft0, ft1, wa, _ = state.fields(t)
    grid = (state.gx, state.gy)
    ia = render_time(a, b, _OracleState(ft0, ft1, np.ones_like(wa), state.size, grid), t).astype(np.float32)
    ib = render_time(a, b, _OracleState(ft0, ft1, np.zeros_like(wa), state.size, grid), t).astype(np.float32)
    return _best_of(ia, ib, truth)


def pick_times(k: int, n: int) -> list[int]:
    if n <= 0 or n >= k - 1:
        return list(range(1, k))
    return sorted({int(round(k * (i + 1) / (n + 1))) for i in range(n)})


def run_clip(frames: list[np.ndarray], k: int, n_times: int, interp: FlowInterpolator) -> dict[str, list[float]]:
    last = (len(frames) - 1) // k * k
    js = pick_times(k, n_times)
    res: dict[str, list[float]] = {}
    for p in range(0, last, k):
        a, b = frames[p], frames[p + k]
        ts = [j / k for j in js]
        ours = list(inbetween(a, b, ts, backend=interp))
        state = our_state(a, b)
        for j, t, o in zip(js, ts, ours):
            truth = frames[p + j]
            row = {"cross-fade": cross_fade(a, b, t), "keyrender": o,
                   "keyrender's flows + oracle blend": ours_oracle_blend(a, b, state, truth, t),
                   **oracle(a, b, truth, t)}
            for name, img in row.items():
                res.setdefault(name, []).append(psnr(img, truth))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", default="tree,vtest", help="clips whose file name starts with these (comma separated)")
    ap.add_argument("--gaps", default="8,24", help="keyframe gaps (comma separated)")
    ap.add_argument("--times", type=int, default=3, help="in-betweens per pair (0: all)")
    ap.add_argument("--limit", type=int, default=241, help="frames per clip, as the interpolation benchmark")
    args = ap.parse_args(argv)
    videos = [DATA / "tree.avi"] + [p for p in EXTRA if p.is_file()][:1]
    names = [c.strip() for c in args.clips.split(",") if c.strip()]
    videos = [v for v in videos if any(v.name.startswith(n) for n in names)]
    interp = FlowInterpolator()
    cols = ("keyrender", "keyrender's flows + oracle blend", "oracle flow", "oracle flow + oracle blend")
    print("| clip | k | in-betweens | cross-fade (dB) | " + " | ".join(cols) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in cols) + " |")
    for video in videos:
        frames, _ = decode_distinct(video, args.limit or None)
        for k in [int(g) for g in args.gaps.split(",")]:
            t0 = time.perf_counter()
            res = run_clip(frames, k, args.times, interp)
            base = float(np.mean(res["cross-fade"]))
            cells = [f"{base:.2f}"] + [f"{np.mean(res[n]) - base:+.2f}" for n in cols]
            print(f"| {video.name} | {k} | {len(res['cross-fade'])} | " + " | ".join(cells)
                  + f" |  ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
