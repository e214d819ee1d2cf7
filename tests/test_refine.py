"""The test-time identity loop with a controllable generator and checker (planted drift).

An image's brightness stands for its identity score here: check() reads similarity = mean / 255
against a threshold of 0.5, so a test plants drift by choosing pixel values.
"""

from __future__ import annotations

import numpy as np

from keyrender.identity.base import CharacterResult, FrameCheck
from keyrender.keyframes.base import KeyframeRequest, derive_seed
from keyrender.shot.refine import Budget, IdentityLoop, RefineConfig, SpanRecorder

H, W = 8, 8
THRESHOLD = 0.5


def img(value: float) -> np.ndarray:
    return np.full((H, W, 3), int(round(value)), np.uint8)


def check(image: np.ndarray, expected):
    sim = float(image.mean()) / 255
    if sim < 0.02:  # a black frame: nobody there
        return FrameCheck({n: CharacterResult(n, False, None, THRESHOLD, False) for n in expected})
    return FrameCheck({n: CharacterResult(n, True, sim, THRESHOLD, sim >= THRESHOLD) for n in expected})


class Generator:
    """Returns planned brightness per (index, attempt); records every call."""

    name = "planned"

    def __init__(self, plan=None, repair_values=None):
        self.plan = plan or {}
        self.repair_values = repair_values or {}
        self.calls: list[tuple] = []

    def generate(self, request, indices=None, attempts=None, identity_strength=None):
        out = {}
        for i in indices:
            k = (attempts or {}).get(i, 0)
            self.calls.append(("generate", i, k, identity_strength, sorted(request.fixed)))
            out[i] = img(self.plan.get((i, k), 30))
        return out

    def regenerate(self, request, index, init_image, prompt, *, strength, attempt, identity_strength=None):
        self.calls.append(("regenerate", index, attempt))
        return img(self.repair_values.get(attempt, 30))


def request(n=3, seed=11) -> KeyframeRequest:
    return KeyframeRequest(shot="s1", scene="1", prompts=["p"] * n, times=[0.0, 1.0, 2.0][:n],
                           negative_prompt="", width=W, height=H, seed=seed, identity_strength=0.7)


def dip_interpolator(dip: float = 150, min_span: int = 8):
    """Cross-fade with a planted dip in the middle of spans longer than `min_span` frames."""
    spans = []

    def interpolate(a, b, times, info):
        n = len(times) + 1
        spans.append(n)
        info["mode"] = "planted"
        for t in times:
            v = (1 - t) * float(a.mean()) + t * float(b.mean())
            if n > min_span:
                v -= dip * 4 * t * (1 - t)
            yield img(max(0.0, v))

    interpolate.spans = spans
    return interpolate


def test_failing_keyframe_is_rerolled_and_passing_ones_are_untouched():
    gen = Generator(plan={(1, 1): 80, (1, 2): 220, (1, 3): 240})
    images = {0: img(200), 1: img(50), 2: img(210)}
    budget = Budget(10)
    loop = IdentityLoop(check, ["anna"], RefineConfig(keyframe_attempts=3), budget)
    out = loop.keyframes(request(), images, [0, 1, 2], lambda: gen)
    assert out.images[0] is images[0] and out.images[2] is images[2]
    assert out.images[1].mean() == 220  # the first passing attempt stops the re-rolls
    assert [c[:3] for c in gen.calls] == [("generate", 1, 1), ("generate", 1, 2)]
    # identity strength rises with the attempt; the other keyframes are passed as context
    assert gen.calls[0][3] < gen.calls[1][3] and gen.calls[0][4] == [0, 2]
    rec = out.records[1]
    assert [a["attempt"] for a in rec["attempts"]] == [0, 1, 2] and rec["chosen_attempt"] == 2
    assert rec["attempts"][2]["seed"] == derive_seed(11, 1, 2) and rec["final"]["passed"]
    assert budget.spent == 2 and "flagged" not in rec


def test_all_passing_costs_no_generation():
    gen = Generator()
    loop = IdentityLoop(check, ["anna"], RefineConfig(), Budget(10))
    out = loop.keyframes(request(), {0: img(200), 1: img(210), 2: img(220)}, [0, 1, 2], lambda: gen)
    assert gen.calls == [] and all(r["final"]["passed"] for r in out.records.values())
    rec = SpanRecorder()
    interp = dip_interpolator(dip=0)
    loop = IdentityLoop(check, ["anna"], RefineConfig(), Budget(10),
                        repair=lambda f, im, k: (gen.regenerate(None, f, im, "", strength=0.3, attempt=k), 0), stride=1, rec=rec)
    frames = list(loop.fill_span(0, img(200), 24, img(210), interp))
    assert len(frames) == 23 and gen.calls == [] and not rec.flagged and not rec.repairs


def test_unrepairable_keyframe_keeps_best_attempt_and_is_flagged_within_budget():
    gen = Generator(plan={(0, 1): 90, (0, 2): 120, (0, 3): 100})
    budget = Budget(2)  # the shot budget is smaller than the per-keyframe attempts
    loop = IdentityLoop(check, ["anna"], RefineConfig(keyframe_attempts=3), budget)
    out = loop.keyframes(request(n=2), {0: img(60), 1: img(200)}, [0, 1], lambda: gen)
    assert len(gen.calls) == 2 and budget.left == 0 and budget.spent == 2
    assert out.images[0].mean() == 120 and out.records[0]["flagged"] and out.records[0]["chosen_attempt"] == 2


def test_storyboard_keyframes_are_checked_never_replaced():
    gen = Generator(plan={(0, 1): 250})
    loop = IdentityLoop(check, ["anna"], RefineConfig(), Budget(10))
    out = loop.keyframes(request(n=2), {0: img(40), 1: img(200)}, [], lambda: gen)
    assert gen.calls == [] and out.images[0].mean() == 40 and out.records[0]["flagged"]


def test_no_face_anywhere_skips_the_loop():
    gen = Generator()
    loop = IdentityLoop(check, ["anna"], RefineConfig(), Budget(10))
    out = loop.keyframes(request(n=2), {0: img(0), 1: img(1)}, [0, 1], lambda: gen)
    assert out.skipped and "no face" in out.skipped and gen.calls == []


def test_drifting_span_gets_a_new_keyframe_and_passes():
    gen = Generator(repair_values={0: 230})
    interp = dip_interpolator(min_span=12)  # the 24-frame span drifts, its 12-frame halves do not
    rec = SpanRecorder()
    budget = Budget(10)

    def repair(f, image, k):
        return gen.regenerate(None, f, image, "", strength=0.35, attempt=k), 1234

    loop = IdentityLoop(check, ["anna"], RefineConfig(), budget, repair=repair, stride=1, rec=rec)
    frames = list(loop.fill_span(0, img(200), 24, img(200), interp))
    assert [f for f, _, _ in frames] == list(range(1, 24))  # every frame once, in order
    sources = {f: s for f, _, s in frames}
    assert sources[12] == "repair" and sum(s == "repair" for s in sources.values()) == 1
    assert dict((f, im) for f, im, _ in frames)[12].mean() == 230  # the video holds the repaired frame
    assert not rec.flagged and all(s["passed"] for s in rec.frame_scores.values())
    assert rec.repairs[0]["frame"] == 12 and rec.repairs[0]["result"] == "passed"
    assert rec.repairs[0]["before"]["passed"] is False and rec.repairs[0]["attempts"][0]["seed"] == 1234
    assert budget.spent == 1 and interp.spans == [24, 12, 12]


def test_unrepairable_span_is_flagged_bounded_and_never_loops():
    gen = Generator(repair_values={})  # every repair attempt fails (brightness 30)
    interp = dip_interpolator(dip=200, min_span=1)
    rec = SpanRecorder()
    budget = Budget(50)

    def repair(f, image, k):
        return gen.regenerate(None, f, image, "", strength=0.35, attempt=k), k

    loop = IdentityLoop(check, ["anna"], RefineConfig(repair_attempts=2), budget, repair=repair, stride=1, rec=rec)
    frames = list(loop.fill_span(0, img(200), 48, img(200), interp))
    assert len(frames) == 47 and all(s == "interpolated" for _, _, s in frames)
    assert rec.flagged and rec.repairs[0]["result"] == "failed" and len(gen.calls) == 2


def test_budget_caps_repairs_across_depths():
    # every repair passes but every new span drifts again: only the budget and the depth stop it
    gen = Generator(repair_values={0: 240})
    interp = dip_interpolator(dip=200, min_span=2)
    rec = SpanRecorder()
    budget = Budget(3)

    def repair(f, image, k):
        return gen.regenerate(None, f, image, "", strength=0.35, attempt=k), k

    loop = IdentityLoop(check, ["anna"], RefineConfig(repair_depth=10), budget, repair=repair, stride=1, rec=rec)
    frames = list(loop.fill_span(0, img(200), 64, img(200), interp))
    assert [f for f, _, _ in frames] == list(range(1, 64))
    assert len(gen.calls) == 3 and budget.left == 0 and rec.flagged
    assert any(r.get("stopped") == "shot budget spent" for r in rec.repairs)


def test_repair_depth_is_bounded():
    gen = Generator(repair_values={0: 240})
    interp = dip_interpolator(dip=200, min_span=2)
    rec = SpanRecorder()
    loop = IdentityLoop(check, ["anna"], RefineConfig(repair_depth=1), Budget(100),
                        repair=lambda f, im, k: (gen.regenerate(None, f, im, "", strength=0.35, attempt=k), k), stride=1, rec=rec)
    frames = list(loop.fill_span(0, img(200), 64, img(200), interp))
    assert len(frames) == 63 and len(gen.calls) == 1 and max(r["depth"] for r in rec.repairs) == 0


def test_unavailable_generator_flags_and_refunds_budget():
    interp = dip_interpolator()
    rec = SpanRecorder()
    budget = Budget(5)
    loop = IdentityLoop(check, ["anna"], RefineConfig(), budget, repair=lambda f, im, k: None, stride=1, rec=rec)
    frames = list(loop.fill_span(0, img(200), 24, img(200), interp))
    assert len(frames) == 23 and rec.flagged and budget.spent == 0 and rec.repairs[0]["result"] == "unavailable"


def test_stride_checks_fewer_frames_and_long_spans_are_not_held():
    interp = dip_interpolator(dip=0)
    rec = SpanRecorder()
    cfg = RefineConfig(max_span_bytes=0)  # force the second interpolation pass
    loop = IdentityLoop(check, ["anna"], cfg, Budget(1), repair=None, stride=4, rec=rec)
    frames = list(loop.fill_span(0, img(200), 24, img(200), interp))
    assert len(frames) == 23 and sorted(rec.frame_scores) == [4, 8, 12, 16, 20]
    assert interp.spans == [24, 24]
    assert RefineConfig().stride(100) == 3 and RefineConfig().stride(1000) == 5 and RefineConfig(check_every=3).stride(10) == 3
