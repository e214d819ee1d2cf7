"""What a shot leaves on disk, as typed records: the shot manifest, the cache check and the anchor.

    Manifest.read(folder) -> Manifest | None       the typed `<out>/<shot>/manifest.json`
    manifest.to_json() / manifest.write(folder)     exactly the JSON the shot renderer writes
    is_done(out_dir, key) / cached_result(job)      the cache check and what a cached shot reports
    scene_anchor_path(job)                          the written keyframe a shot takes as its anchor

The jobs and their results are in `core.jobs`, the staging folders in `outputs.staging`.

One definition for the writer (shot.render.render_shot), the readers (the cache check,
outputs.report, outputs.timeline, the Ray executor) and the documentation: `docs/manifest.md` documents these fields
and a test checks the two agree. Records the stages report in their own words (a span's backend
details, a keyframe's re-roll attempts, a repair) are stored as the stage wrote them; readers get
typed views of them (`Span`, `Repair`, `Score`). `Manifest.read` returns None for a folder
without a readable manifest of this schema: a damaged or foreign file is "not done", never an
exception in a reader.

Outputs layer: imports only the base layer (jobs, fsutil, errors). No torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from keyrender.core.fsutil import atomic_write_json, sha256_file
from keyrender.core.jobs import MANIFEST, VIDEO, ShotJob, ShotResult

SCHEMA = "keyrender.manifest/1"

#: how a span between keyframes was filled (interpolate.flow's modes)
SPAN_MODES = {"camera": "camera move + residual flow", "flow": "optical flow", "static": "static (cross-fade)",
              "pose": "pose change: the subject follows its face, the rest dissolves",
              "fallback": "FALLBACK: a dissolve (nothing explained the keyframes)",
              "cut": "CUT: held, then jump (renders from before version 8)",
              "generative": "keyframe-conditioned video model"}


def _pick(cls, data: dict[str, Any] | None) -> dict[str, Any]:
    """The keys of `data` that `cls` declares (a newer writer's extra keys are ignored)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in (data or {}).items() if k in names}


# ---------------------------------------------------------------------------------------------
# scores: stored as the identity checker writes them, read through these views


@dataclass
class CharacterScore:
    """One expected character in one checked frame."""

    found: bool = False
    similarity: float | None = None     # in the judge's own scale; None when no face matched
    threshold: float | None = None
    passed: bool = False
    wrong_person: str | None = None     # the cast member this face matches instead
    wrong_similarity: float | None = None  # its similarity to that member
    followed: float | None = None       # set when followed from the keyframes, not embedded: the match

    @classmethod
    def from_dict(cls, d: dict | None) -> "CharacterScore":
        return cls(**_pick(cls, d))


@dataclass
class Score:
    """The identity check of one frame: every expected character, and faces of nobody expected."""

    passed: bool = False
    margin: float | None = None
    characters: dict[str, CharacterScore] = field(default_factory=dict)
    strangers: int = 0
    others: dict[str, float] = field(default_factory=dict)  # cast members not expected, in the frame

    @classmethod
    def from_dict(cls, d: dict | None) -> "Score":
        d = d or {}
        return cls(passed=bool(d.get("passed")), margin=d.get("margin"),
                   characters={n: CharacterScore.from_dict(c) for n, c in (d.get("characters") or {}).items()},
                   strangers=int(d.get("strangers") or 0), others=dict(d.get("others") or {}))

    def why(self) -> str:
        """Why the frame failed, in words."""
        parts = []
        for name, c in self.characters.items():
            if c.passed:
                continue
            if not c.found:
                parts.append(f"{name} missing")
            elif c.wrong_person:
                parts.append(f"{name} looks like {c.wrong_person}" + (
                    f" ({c.wrong_similarity:.3f})" if c.wrong_similarity is not None else ""))
            elif c.similarity is not None:
                parts.append(f"{name} {c.similarity:.3f} < {c.threshold:.3f}")
        if self.strangers:
            parts.append(f"{self.strangers} stranger(s)")
        return "; ".join(parts) or "failed"

    def shows(self) -> str:
        """What a failing picture shows, in words: "shows scarlett, not angelina (similarity to
        scarlett 0.621, to angelina 0.221)" (the face taken for angelina is scarlett), "shows
        scarlett (0.704), not angelina (...)" (scarlett elsewhere in the picture), "shows no face
        of angelina", "does not show angelina (similarity 0.221 < 0.491; nobody else in the cast
        either)"."""
        others = ", ".join(f"{n} ({v:.3f})" for n, v in self.others.items())
        parts = []
        for name, c in self.characters.items():
            if c.passed:
                continue
            if c.found and c.wrong_person:
                parts.append(f"shows {c.wrong_person}, not {name}" + (
                    f" (similarity to {c.wrong_person} {c.wrong_similarity:.3f}, to {name} {c.similarity:.3f})"
                    if c.wrong_similarity is not None and c.similarity is not None else ""))
            elif others:
                parts.append(f"shows {others}, not {name}" + (
                    f" (similarity to {name} {c.similarity:.3f} < {c.threshold:.3f})" if c.similarity is not None else ""))
            elif not c.found:
                parts.append(f"shows no face of {name}")
            else:
                parts.append(f"does not show {name} (similarity {c.similarity:.3f} < {c.threshold:.3f}; "
                             "nobody else in the cast either)")
        return "; ".join(parts) or "passes"


@dataclass
class Attempt(Score):
    """One try at a keyframe or a repair: its seed, and its score."""

    attempt: int = 0
    seed: int | None = None
    identity_strength: float | None = None

    @classmethod
    def from_dict(cls, d: dict | None) -> "Attempt":
        d = d or {}
        s = Score.from_dict(d)
        return cls(s.passed, s.margin, s.characters, s.strangers, s.others, attempt=int(d.get("attempt") or 0),
                   seed=d.get("seed"), identity_strength=d.get("identity_strength"))


@dataclass
class Repair:
    """An in-between promoted to a repair keyframe (identity.repairs[])."""

    frame: int
    depth: int = 0
    reason: str = ""
    result: str = ""                     # "passed" | "failed" | "unavailable"
    stopped: str | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> "Repair":
        return cls(frame=int(d["frame"]), depth=int(d.get("depth") or 0), reason=str(d.get("reason") or ""),
                   result=str(d.get("result") or ""), stopped=d.get("stopped"),
                   attempts=[Attempt.from_dict(a) for a in d.get("attempts") or []])


@dataclass
class Span:
    """One keyframe pair filled (interpolation.spans[]); `info` is everything the backend said.

    The verdict, where the backend gives one: `explained` (0..1, the share of the picture its warp
    explains), `trusted` and `verdict` (a sentence for the user); `middle`: the thumbnail of the
    span's middle in-between, relative to the shot folder."""

    start: int
    end: int
    mode: str = "?"
    camera: dict[str, Any] = field(default_factory=dict)
    explained: float | None = None
    trusted: bool | None = None
    verdict: str | None = None
    middle: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "Span":
        explained = d.get("explained")
        return cls(start=d.get("from", 0), end=d.get("to", 0), mode=str(d.get("mode", "?")),
                   camera=dict(d.get("camera") or {}),
                   explained=float(explained) if isinstance(explained, (int, float)) else None,
                   trusted=d.get("trusted") if isinstance(d.get("trusted"), bool) else None,
                   verdict=str(d["verdict"]) if d.get("verdict") else None,
                   middle=str(d["middle"]) if d.get("middle") else None, info=dict(d))

    @property
    def suspect(self) -> bool:
        """Worth a look: the backend does not trust it, or (an older manifest without a verdict)
        it is not real motion: held then jumped, or cross-faded because nothing explained it."""
        if self.trusted is not None:
            return not self.trusted
        return self.mode in ("cut", "fallback")

    @property
    def says(self) -> str:
        """The span's verdict in words: the backend's own, else its mode's description."""
        return self.verdict or SPAN_MODES.get(self.mode, self.mode)


# ---------------------------------------------------------------------------------------------
# the manifest


@dataclass
class FileRecord:
    path: str
    bytes: int
    sha256: str

    @classmethod
    def of(cls, root: Path, rel: str) -> "FileRecord":
        p = Path(root) / rel
        return cls(rel, p.stat().st_size, sha256_file(p))

    def verifies(self, root: Path) -> bool:
        """The file is under `root` with its recorded size and sha256."""
        p = Path(root) / self.path
        try:
            return p.stat().st_size == self.bytes and sha256_file(p) == self.sha256
        except OSError:
            return False


@dataclass
class Inputs:
    row: dict[str, str] = field(default_factory=dict)
    line: int | None = None
    prompt: str = ""
    negative_prompt: str | None = None
    characters: list[str] = field(default_factory=list)
    preset: str | None = None
    seed: int | None = None
    notes: str | None = None


@dataclass
class VideoInfo:
    path: str = VIDEO
    frames: int = 0
    fps: str = "24/1"
    width: int = 0
    height: int = 0
    codec: str = "h264"
    pix_fmt: str = "yuv420p"


@dataclass
class KeyframeEntry:
    index: int | None
    frame: int
    time: float
    path: str
    source: str                         # "storyboard" | "generated" | "repair"
    prompt: str | None = None
    seed: int | None = None
    identity: dict | None = None        # attempts[], final (a score), chosen_attempt, flagged

    def final_score(self) -> Score | None:
        return Score.from_dict(self.identity["final"]) if self.identity and self.identity.get("final") else None

    def attempts(self) -> list[Attempt]:
        return [Attempt.from_dict(a) for a in (self.identity or {}).get("attempts") or []]

    @property
    def chosen_attempt(self) -> int | None:
        return (self.identity or {}).get("chosen_attempt")


@dataclass
class FlowOptions:
    """The flow options the shot was interpolated with (shot.InterpolationOptions)."""

    hedge: float = 0.5
    camera_motion: bool = True
    hedge_from: str = "run"             # "shot" (its hedge column) or "run"
    applied: bool = True
    why_not: str | None = None          # written only when set


@dataclass
class Interpolation:
    backend: str = "flow"
    options: FlowOptions = field(default_factory=FlowOptions)
    spans: list[dict] = field(default_factory=list)
    fallback: str | None = None
    # what the spans touching a generated keyframe got (options.InbetweenChoice.manifest):
    # backend, model, wanted, fallback; None for a storyboard shot or an injected interpolator
    inbetweens: dict | None = None

    def span_records(self) -> list[Span]:
        return [Span.from_dict(s) for s in self.spans]


@dataclass
class Judge:
    model: str
    metric: str
    similarity: str


@dataclass
class BudgetRecord:
    generations: int = 0
    spent: int = 0


def flag_summary(frames: dict[str, dict], flagged: list[int]) -> tuple[list[dict], str | None]:
    """Who-is-who over a shot's flagged frames (`identity.frames` scores): one record per
    character shown as another cast member ({"character", "shows", "frames", "similarity": the
    highest to that member}), and why the shot is flagged, in words (None when nothing is):
    "angelina is scarlett in 17 frames (similarity to scarlett up to 0.621)", "angelina under
    her threshold in 3 frames (lowest 0.402 < 0.450)", "angelina missing in 2 frames"."""
    wrong: dict[tuple[str, str], dict] = {}
    low: dict[str, list[tuple[float, float]]] = {}
    missing: dict[str, int] = {}
    seen: dict[str, float] = {}  # cast members not expected, recognised in the flagged frames
    for f in sorted(flagged):
        score = Score.from_dict(frames.get(str(f)))
        for n, v in score.others.items():
            seen[n] = max(v, seen.get(n, -1e9))
        for name, c in score.characters.items():
            if c.passed:
                continue
            if not c.found:
                missing[name] = missing.get(name, 0) + 1
            elif c.wrong_person:
                w = wrong.setdefault((name, c.wrong_person), {"character": name, "shows": c.wrong_person,
                                                               "frames": [], "similarity": None})
                w["frames"].append(f)
                if c.wrong_similarity is not None:
                    w["similarity"] = round(max(c.wrong_similarity, w["similarity"] or -1e9), 4)
            elif c.similarity is not None:
                low.setdefault(name, []).append((c.similarity, c.threshold))
    parts = []
    for w in wrong.values():
        n = len(w["frames"])
        parts.append(f"{w['character']} is {w['shows']} in {n} frame{'s' if n != 1 else ''}" + (
            f" (similarity to {w['shows']} up to {w['similarity']:.3f})" if w["similarity"] is not None else ""))
    for name, vals in low.items():
        s, t = min(vals)
        parts.append(f"{name} under the threshold in {len(vals)} frame{'s' if len(vals) != 1 else ''} "
                     f"(lowest {s:.3f} < {t:.3f})")
    for name, n in missing.items():
        parts.append(f"{name} missing in {n} frame{'s' if n != 1 else ''}")
    if seen:
        parts.append("in those frames: " + ", ".join(f"{n} (similarity up to {v:.3f})" for n, v in seen.items()))
    return list(wrong.values()), ("; ".join(parts) or ("failed identity checks" if flagged else None))


@dataclass
class IdentityRecord:
    checked: bool = False
    why_not: str | None = None
    judge: Judge | None = None
    conditioning_model: str | None = None
    characters: list[str] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    check_every: int | None = None
    budget: BudgetRecord = field(default_factory=BudgetRecord)
    repairs: list[dict] = field(default_factory=list)
    flagged_frames: list[int] = field(default_factory=list)
    # why the shot is flagged, in words (flag_summary), and each character shown as another member
    flag_reason: str | None = None
    wrong_person: list[dict] = field(default_factory=list)
    checks: dict[str, int] = field(default_factory=dict)    # {"embedded": n, "followed": m}
    frames: dict[str, dict] = field(default_factory=dict)   # frame index (string) -> score

    def scores(self) -> dict[int, Score]:
        return {int(f): Score.from_dict(s) for f, s in self.frames.items()}

    def repair_records(self) -> list[Repair]:
        return [Repair.from_dict(r) for r in self.repairs]

    @classmethod
    def from_dict(cls, d: dict | None) -> "IdentityRecord":
        d = _pick(cls, d)
        judge = d.get("judge")
        d["judge"] = Judge(**_pick(Judge, judge)) if isinstance(judge, dict) else None
        d["budget"] = BudgetRecord(**_pick(BudgetRecord, d.get("budget")))
        return cls(**d)


@dataclass
class Manifest:
    """One rendered shot (docs/manifest.md). Field order is the JSON's order."""

    shot: str
    scene: str
    cache_key: str
    inputs: Inputs
    video: VideoInfo
    keyframes: list[KeyframeEntry]
    interpolation: Interpolation
    identity: IdentityRecord
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    files: list[FileRecord] = field(default_factory=list)
    flagged: bool = False
    status: str = "done"
    schema: str = SCHEMA

    _ORDER = ("schema", "shot", "scene", "status", "flagged", "cache_key", "inputs", "video",
              "keyframes", "interpolation", "identity", "timings", "warnings", "files")

    # -- writing

    def to_json(self) -> dict[str, Any]:
        """The JSON object, keys in the documented order; optional keys left out when unset (a
        keyframe's `identity`, a repair entry's prompt and seed, the options' `why_not`)."""
        d = asdict(self)
        out = {k: d[k] for k in self._ORDER}
        out["keyframes"] = [
            {k: v for k, v in e.items()
             if not (k == "identity" and v is None) and not (e["source"] == "repair" and k in ("prompt", "seed"))}
            for e in d["keyframes"]]
        if out["interpolation"]["options"]["why_not"] is None:
            del out["interpolation"]["options"]["why_not"]
        return out

    def write(self, folder: str | os.PathLike) -> Path:
        """Write `folder`/manifest.json atomically; the path."""
        path = Path(folder) / MANIFEST
        atomic_write_json(path, self.to_json())
        return path

    # -- reading

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Manifest":
        interp = _pick(Interpolation, d.get("interpolation"))
        interp["options"] = FlowOptions(**_pick(FlowOptions, interp.get("options")))
        return cls(
            shot=d["shot"], scene=d["scene"], cache_key=d.get("cache_key", ""),
            inputs=Inputs(**_pick(Inputs, d.get("inputs"))),
            video=VideoInfo(**_pick(VideoInfo, d.get("video"))),
            keyframes=[KeyframeEntry(**_pick(KeyframeEntry, k)) for k in d.get("keyframes") or []],
            interpolation=Interpolation(**interp),
            identity=IdentityRecord.from_dict(d.get("identity")),
            timings=dict(d.get("timings") or {}), warnings=list(d.get("warnings") or []),
            files=[FileRecord(**_pick(FileRecord, f)) for f in d.get("files") or []],
            flagged=bool(d.get("flagged")), status=d.get("status", "done"), schema=d.get("schema", SCHEMA),
        )

    @classmethod
    def read(cls, folder: str | os.PathLike, path: str | os.PathLike | None = None) -> "Manifest | None":
        """The manifest in `folder` (or at `path`), or None when there is none, it cannot be
        parsed, or it is not of this schema."""
        try:
            d = json.loads(Path(path or Path(folder) / MANIFEST).read_text(encoding="utf-8"))
            if not isinstance(d, dict) or d.get("schema") != SCHEMA:
                return None
            return cls.from_dict(d)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def verifies(self, folder: str | os.PathLike) -> bool:
        """Every file the manifest lists is there with its recorded size and sha256."""
        return all(f.verifies(Path(folder)) for f in self.files)


def read_manifest(out_dir: str | os.PathLike) -> dict | None:
    """The manifest of `out_dir` as the raw JSON object (any schema), or None. For the typed
    record use `Manifest.read`."""
    try:
        d = json.loads((Path(out_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


# ---------------------------------------------------------------------------------------------
# the cache check and the scene anchor


def is_done(out_dir: str | os.PathLike, key: str) -> bool:
    """The shot at out_dir was rendered with this key and its files are intact (size + sha256)."""
    m = Manifest.read(out_dir)
    return m is not None and m.cache_key == key and m.status == "done" and m.verifies(Path(out_dir))


def cached_result(job: ShotJob) -> ShotResult:
    """The result of a shot that is already rendered (its flagged frames from its manifest)."""
    m = Manifest.read(job.out_dir)
    flagged = list(m.identity.flagged_frames) if m else []
    reason = m.identity.flag_reason if m and flagged else None
    return ShotResult(job.shot.id, "cached", job.out_dir, job.out_dir / VIDEO, job.out_dir / MANIFEST, flagged,
                      reason=reason)


def scene_anchor_path(job: ShotJob) -> Path | None:
    """The written keyframe 0 of the shot `job.anchor_from` names, when that shot is rendered with
    `job.anchor_key`; else None (no anchor: the shot is its scene's first, a storyboard shot, or
    the first shot failed or is not rendered)."""
    if job.anchor_from is None:
        return None
    m = Manifest.read(job.anchor_from)
    if m is None or m.cache_key != job.anchor_key or not m.keyframes:
        return None
    path = Path(job.anchor_from) / m.keyframes[0].path
    return path if path.is_file() else None
