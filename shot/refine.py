"""The test-time identity loop: check faces, regenerate what fails, within a budget.

Two places in a shot's render call it:

- keyframes: every keyframe is checked against the identities expected in the shot; a failing
  generated keyframe is re-rolled (`attempt=k`: a new seed and a rising identity strength) and the
  best attempt by identity margin is kept. Passing keyframes and storyboard keyframes are never
  touched (a failing storyboard frame is flagged, not replaced).
- in-betweens: each span between two keyframes is interpolated and checked at a stride. When a
  frame fails, the worst one becomes a new keyframe: it is regenerated image-to-image from the
  interpolated frame with the identity conditioning, checked, and both halves are interpolated
  again. Recursion is bounded by depth and by the shot's generation budget.

This module loads no model: it is handed a checker, a generator and an interpolator, and it
records every attempt, seed and score so the manifest hides nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np

from keyrender.identity.base import FrameCheck
from keyrender.keyframes.base import KeyframeGenerator, KeyframeRequest
from keyrender.outputs.manifest import Score

Check = Callable[[np.ndarray, Sequence[str]], FrameCheck]
Interpolate = Callable[[np.ndarray, np.ndarray, Sequence[float], dict], Iterator[np.ndarray]]

# promoted in-betweens take seeds from an index range that keyframes never use
REPAIR_INDEX_BASE = 100_000


AUTO_STRIDE = 3  # the in-between check stride when --check-every is not given (RefineConfig.stride)


@dataclass
class RefineConfig:
    """Budgets and knobs of the loop. Defaults suit a shot of a few seconds."""

    keyframe_attempts: int = 3        # re-rolls of one keyframe after its first try
    shot_generations: int = 12        # all re-rolls and repairs of one shot together
    repair_depth: int = 3             # how many times a span may be split by new keyframes
    repair_attempts: int = 2          # tries at regenerating one promoted in-between
    repair_strength: float = 0.35     # img2img denoise strength of a repair (the preset's regenerate_strength)
    strength_step: float = 0.15       # identity strength added per re-roll
    max_identity_strength: float = 1.5
    check_every: int | None = None    # stride of in-between checks; None: automatic
    max_span_bytes: int = 512 << 20   # a span longer than this is interpolated twice, not held

    def identity_strength(self, base: float, attempt: int) -> float:
        """The FaceID scale of re-roll or repair `attempt` (0 = the first try): the shot's `base`
        raised by `strength_step` per attempt, at most `max_identity_strength`. The one rule for
        keyframe re-rolls and in-between repairs."""
        return min(self.max_identity_strength, base + self.strength_step * attempt)

    def stride(self, frames: int) -> int:
        """Every third in-between (8 checks a second at 24 fps), and no more than about 240 checks
        per shot. Keyframes are always checked. An in-between inherits its face from the two
        keyframes around it and drifts smoothly across a span of 12-48 frames, so a drift shows
        on every third frame; a face check costs more than making the frame on a CPU, so checking
        every frame would multiply a storyboard shot's time for no catch. `--check-every 1` checks every frame."""
        if self.check_every:
            return max(1, int(self.check_every))
        return max(AUTO_STRIDE, math.ceil(frames / 240))


@dataclass
class Budget:
    """The generations a shot may still spend. Never goes below zero."""

    left: int
    spent: int = 0

    def refund(self) -> None:
        """Give back a generation that was taken but could not be made."""
        self.left += 1
        self.spent -= 1

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        self.spent += 1
        return True


def _scores(check: FrameCheck) -> dict:
    return {
        "passed": check.passed,
        "margin": None if math.isinf(check.margin) else round(float(check.margin), 4),
        "characters": {
            name: {
                "found": r.found,
                "similarity": None if r.similarity is None else round(float(r.similarity), 4),
                "threshold": round(float(r.threshold), 4),
                "passed": r.passed,
                **({"wrong_person": r.wrong_person} if r.wrong_person else {}),
                **({"wrong_similarity": round(float(r.wrong_similarity), 4)}
                   if getattr(r, "wrong_similarity", None) is not None else {}),
                **({"followed": r.followed} if getattr(r, "followed", None) is not None else {}),
            }
            for name, r in check.characters.items()
        },
        **({"strangers": len(check.strangers)} if check.strangers else {}),
        **({"others": {n: round(float(v), 4) for n, v in check.others.items()}}
           if getattr(check, "others", None) else {}),
    }


@dataclass
class KeyframeOutcome:
    images: dict[int, np.ndarray]
    records: dict[int, dict] = field(default_factory=dict)  # index -> {"attempts": [...], "final": ...}
    skipped: str | None = None                              # why the loop did nothing


@dataclass
class SpanRecorder:
    """Everything the in-between loop did, for the manifest."""

    frame_scores: dict[int, dict] = field(default_factory=dict)
    flagged: set[int] = field(default_factory=set)
    repairs: list[dict] = field(default_factory=list)
    spans: list[dict] = field(default_factory=list)


#: repair(frame, interpolated image, attempt) -> (regenerated image, seed used), or None when it
#: cannot generate
Repair = Callable[[int, np.ndarray, int], "tuple[np.ndarray, int] | None"]


@dataclass
class IdentityLoop:
    """One shot's identity loop: the check and the characters it expects, the knobs and the
    shot's generation budget, and for the in-betweens the repair, the check stride and the record
    of what was done (`rec`, for the manifest).

    check: None turns the checks off (frames stream straight through). repair: None when nothing
    can be regenerated (failing frames are then flagged, never replaced)."""

    check: Check | None
    expected: Sequence[str]
    config: RefineConfig
    budget: Budget
    repair: Repair | None = None
    stride: int = 1
    rec: SpanRecorder = field(default_factory=SpanRecorder)

    def keyframes(self, request: KeyframeRequest, images: dict[int, np.ndarray], generated: Sequence[int],
                  generator: Callable[[], KeyframeGenerator] | None) -> KeyframeOutcome:
        """Check every keyframe; re-roll the failing generated ones, keeping the best by margin.

        generated: the indices that came from the generator (the others are the user's and are
        only checked). generator: a callable returning the generator (models load only if a
        re-roll is needed); None when nothing can be generated.
        """
        check, expected, config, budget = self.check, self.expected, self.config, self.budget
        out = KeyframeOutcome(images=dict(images))
        checks = {i: check(img, expected) for i, img in sorted(images.items())}
        if expected and not any(c.found for ch in checks.values() for c in ch.characters.values()) \
                and not any(ch.strangers for ch in checks.values()):
            out.skipped = "no face in any keyframe (landscape or back view?): identity loop skipped"
            for i, ch in checks.items():
                out.records[i] = {"attempts": [{"attempt": 0, "seed": request.seed_for(i) if i in generated else None,
                                                **_scores(ch)}], "final": _scores(ch)}
            return out

        base_strength = request.identity_strength
        for i in sorted(images):
            first = checks[i]
            is_generated = i in generated
            attempts = [{"attempt": 0, "seed": request.seed_for(i) if is_generated else None,
                         "identity_strength": base_strength if is_generated else None, **_scores(first)}]
            best_img, best, best_k = out.images[i], first, 0
            k = 0
            while (not best.passed and is_generated and generator is not None
                   and k < config.keyframe_attempts and budget.take()):
                k += 1
                strength = config.identity_strength(base_strength, k)
                context = KeyframeRequest(**{**request.__dict__,
                                             "fixed": {j: im for j, im in out.images.items() if j != i}})
                img = generator().generate(context, indices=[i], attempts={i: k}, identity_strength=strength)[i]
                result = check(img, expected)
                attempts.append({"attempt": k, "seed": request.seed_for(i, k),
                                 "identity_strength": round(strength, 4), **_scores(result)})
                if result.margin > best.margin:
                    best_img, best, best_k = img, result, k
            out.images[i] = best_img
            out.records[i] = {"attempts": attempts, "final": _scores(best),
                              "chosen_attempt": best_k,
                              **({"flagged": True} if not best.passed else {})}
        return out

    def fill_span(self, fa: int, a: np.ndarray, fb: int, b: np.ndarray, interpolate: Interpolate, *,
                  depth: int = 0) -> Iterator[tuple[int, np.ndarray, str]]:
        """Yield (frame index, image, source) for the frames strictly between keyframes fa and fb.

        source is "interpolated" or "repair" (a promoted in-between that became a keyframe).
        Without a check the frames stream straight through; with one, a span is checked before it
        is yielded (held in memory up to config.max_span_bytes, else interpolated a second time).
        """
        check, expected, config, rec = self.check, self.expected, self.config, self.rec
        frames = list(range(fa + 1, fb))
        if not frames:
            return
        times = [(f - fa) / (fb - fa) for f in frames]
        info: dict = {}
        span = {"from": fa, "to": fb, "depth": depth}
        if check is None or not expected:
            gen = interpolate(a, b, times, info)
            first = next(gen)
            span.update(info)
            rec.spans.append(span)
            yield frames[0], first, "interpolated"
            for f, img in zip(frames[1:], gen):
                yield f, img, "interpolated"
            return

        hold = a.nbytes * len(frames) <= config.max_span_bytes
        held: list[np.ndarray] = []
        checked: dict[int, FrameCheck] = {}
        worst_f, worst_img = None, None
        for f, img in zip(frames, interpolate(a, b, times, info)):
            if hold:
                held.append(img)
            if f % self.stride == 0:
                result = check(img, expected)
                checked[f] = result
                if not result.passed and (worst_f is None or result.margin < checked[worst_f].margin):
                    worst_f, worst_img = f, img
        span.update(info)
        span["checked"] = len(checked)
        span["failed"] = sum(1 for c in checked.values() if not c.passed)

        if (worst_f is not None and self.repair is not None and depth < config.repair_depth
                and info.get("mode") != "cut"):
            new = self._repair(worst_f, worst_img, checked[worst_f], depth)
            if new is not None:
                span["split_at"] = worst_f
                rec.spans.append(span)
                del held
                yield from self.fill_span(fa, a, worst_f, new, interpolate, depth=depth + 1)
                yield worst_f, new, "repair"
                yield from self.fill_span(worst_f, new, fb, b, interpolate, depth=depth + 1)
                return

        rec.spans.append(span)
        for f, result in checked.items():
            rec.frame_scores[f] = _scores(result)
            if not result.passed:
                rec.flagged.add(f)
        source = held if hold else interpolate(a, b, times, {})
        for f, img in zip(frames, source):
            yield f, img, "interpolated"

    def _repair(self, f: int, img: np.ndarray, before: FrameCheck, depth: int) -> np.ndarray | None:
        """Try to regenerate in-between f as a keyframe; the passing attempt, or None."""
        entry = {"frame": f, "depth": depth, "reason": Score.from_dict(_scores(before)).why(), "before": _scores(before), "attempts": []}
        self.rec.repairs.append(entry)
        best = None
        for k in range(self.config.repair_attempts):
            if not self.budget.take():
                entry["stopped"] = "shot budget spent"
                break
            made = self.repair(f, img, k)
            if made is None:
                self.budget.refund()
                entry["result"] = "unavailable"
                return None
            new, seed = made
            result = self.check(new, self.expected)
            entry["attempts"].append({"attempt": k, "seed": seed, **_scores(result)})
            if result.passed:
                best = new
                entry["result"] = "passed"
                break
        else:
            entry["result"] = "failed"
        entry.setdefault("result", "failed")
        return best
