"""Identity checks on real faces: accept rates, false accepts, and time per face, per face model.

Data: `../shared/faces` (real photos of 14 people under people/<person>/, group photos under
groups/; evaluation only, read in place, never copied). Protocol, for each face model:

* every person's photos, sorted by name: the first min(3, n - 1) are the references of that
  person's identity (built exactly as `IdentityStore` builds one: `Identity.from_embeddings`, the
  per-identity calibrated threshold in the model's own metric), the rest are held back;
* genuine accept: a held-back photo is accepted as its own person and by no other identity;
* cast impostor false accept: a held-back photo accepted by another person's identity (per pair);
* stranger false accept: a face from the `strangers_*` group photos (people in none of the
  folders) accepted by an identity, per (face, identity) pair, and "as anyone": per face;
* worst margins: the lowest (similarity - threshold) of a genuine held-back photo, and the
  lowest (threshold - similarity) of any other person or stranger (both positive: all right);
* swap: the obama/biden group photos checked with the two characters expected, and each face
  alone checked as the other person: must be reported as the wrong person.

Rows "dlib @ distance 0.60 / 0.55" apply dlib's fixed distance rules instead of the calibrated
thresholds, the comparison the threshold choice rests on.

References per identity (`--counts`, the table of docs/identity.md): identities made from 1, 2,
3 and 4 references (every choice of them, up to 40 per person, among each person's photos with a
face), each judged on all that person's other photos (genuine accept), on every other person's
photos (cast impostor false accept, per pair) and on the stranger faces (per pair), by the rule in
force (`Identity.from_embeddings`: fewer than 3 references take the model's pair threshold) and by
the rule before it (calibrated from the references whatever their number). An insightface pack is measured when it
is installed (`$INSIGHTFACE_HOME/models/buffalo_l`); otherwise its row says so.

Time: ms per face (detection + alignment + descriptor, over every photo, batched as the
pipeline does), and ms per checked frame at 512x288 and 1280x720 (a real face in a frame of that
size, the pipeline's path: `FaceChecker.check_batch`), on this machine's CPU.

    python benchmarks/identity.py [--models dlib,dlib-cnn,buffalo_l] [--frames 24]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    # run as a script from a checkout: make `keyrender` importable
    try:
        import keyrender  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO.parent))

from keyrender.core.errors import ModelNotFoundError  # noqa: E402
from keyrender.identity import FaceChecker, Identity, Reference, check_frame, load_face_model, read_image  # noqa: E402

FACES = REPO.parent / "shared" / "faces"


def _largest(faces):
    return faces[0] if faces else None


def embed_people(embedder, root: Path):
    """{person: [(file, face or None)]} and the seconds / faces spent."""
    out, faces_n, seconds = {}, 0, 0.0
    for person in sorted(p.name for p in (root / "people").iterdir() if p.is_dir()):
        files = sorted((root / "people" / person).glob("*.jpg"))
        images = [read_image(f) for f in files]
        t = time.perf_counter()
        found = embedder.faces_batch(images)
        seconds += time.perf_counter() - t
        faces_n += sum(len(f) for f in found)
        out[person] = [(f.name, _largest(fs)) for f, fs in zip(files, found)]
    return out, seconds, faces_n


def strangers(embedder, root: Path):
    faces = []
    for f in sorted((root / "groups").glob("strangers_*.jpg")):
        faces += embedder.faces(read_image(f))
    return faces


def build_cast(people, model_name: str, metric: str):
    cast, held = {}, {}
    for person, rows in people.items():
        usable = [(name, face) for name, face in rows if face is not None]
        k = min(3, len(usable) - 1)
        refs, rest = usable[:k], usable[k:]
        cast[person] = Identity.from_embeddings(
            person, np.stack([f.embedding for _, f in refs]),
            tuple(Reference(n, "-") for n, _ in refs), model_name, metric=metric)
        held[person] = rest
    return cast, held


def rates(cast, held, stranger_faces, fixed: float | None = None):
    """(genuine accept, cast false accept, stranger false accept per pair, strangers accepted as
    anyone) as (hits, trials) pairs; `fixed` replaces every threshold."""
    if fixed is not None:
        cast = {n: i.with_threshold(fixed) for n, i in cast.items()}
    names = list(cast)
    ga = [0, 0]
    fa = [0, 0]
    margins = [np.inf, -np.inf]  # worst genuine (sim - threshold), worst impostor or stranger
    for person, rows in held.items():
        for _, face in rows:
            m = {n: cast[n].similarity(face.embedding) - cast[n].threshold for n in names}
            margins[0] = min(margins[0], m[person])
            margins[1] = max([margins[1]] + [v for n, v in m.items() if n != person])
            acc = {n for n in names if m[n] >= 0}
            ga[1] += 1
            ga[0] += acc == {person}
            fa[1] += len(names) - 1
            fa[0] += len(acc - {person})
    sp, sa = [0, 0], [0, 0]
    for face in stranger_faces:
        m = {n: cast[n].similarity(face.embedding) - cast[n].threshold for n in names}
        margins[1] = max([margins[1]] + list(m.values()))
        acc = [n for n in names if m[n] >= 0]
        sp[0] += len(acc)
        sp[1] += len(names)
        sa[0] += bool(acc)
        sa[1] += 1
    return ga, fa, sp, sa, margins


def swap_checks(embedder, cast, root: Path) -> str:
    """Both group photos of obama and biden checked with the two expected; then each one's
    face checked as the other: 'ok' when both pass and both swaps read as the wrong person."""
    pair = {n: cast[n] for n in ("obama", "biden")}
    ok = 0
    total = 0
    for f in ("obama_and_biden.jpg", "two_people.jpg"):
        faces = embedder.faces(read_image(root / "groups" / f))
        fc = check_frame(faces, pair, ["obama", "biden"])
        total += 1
        ok += fc.passed
        for name, other in (("obama", "biden"), ("biden", "obama")):
            face = faces[[tuple(x.box) for x in faces].index(fc.characters[name].box)] if fc.characters[name].box else None
            if face is None:
                continue
            swapped = check_frame([face], pair, [other]).characters[other]
            total += 1
            ok += swapped.wrong_person == name and not swapped.passed
    return f"{ok}/{total}"


def frame_times(embedder, cast, root: Path, n: int) -> dict[str, float]:
    """ms per checked frame (a real face composed into a frame of that size, in batches of 8)."""
    import cv2

    face = read_image(root / "people" / "obama" / "obama.jpg")
    out = {}
    for w, h in ((512, 288), (1280, 720)):
        frame = np.full((h, w, 3), 40, np.uint8)
        scale = 0.8 * h / face.shape[0]
        small = cv2.resize(face, (max(1, int(face.shape[1] * scale)), int(face.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
        y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
        frame[y:y + small.shape[0], x:x + small.shape[1]] = small
        checker = FaceChecker(embedder, {"obama": cast["obama"]})
        frames = [frame] * n
        checker.check_batch(frames[:2], ["obama"])  # warm up
        t = time.perf_counter()
        checks = []
        for i in range(0, n, 8):
            checks += checker.check_batch(frames[i:i + 8], ["obama"])
        out[f"{w}x{h}"] = 1000 * (time.perf_counter() - t) / n
        out[f"{w}x{h} found"] = sum(c.characters["obama"].found for c in checks) / n
    return out


def reference_counts(people, stranger_faces, model_name: str, metric: str, counts=(1, 2, 3, 4),
                     per_person: int = 40) -> list[tuple]:
    """Rows (references, rule, genuine accept, cast impostor FA, stranger FA, worst margins) for
    identities made from `counts` references (see the module docstring)."""
    from itertools import combinations

    from keyrender.identity.identity import calibrate_threshold

    emb = {p: [f.embedding for _, f in rows if f is not None] for p, rows in people.items()}
    rows = []
    for k in counts:
        for rule in ("now", "before"):
            ga, fa, sa = [0, 0], [0, 0], [0, 0]
            worst = [np.inf, -np.inf]
            for person, e in emb.items():
                if len(e) <= k:
                    continue
                for refs in list(combinations(range(len(e)), k))[:per_person]:
                    ident = Identity.from_embeddings(person, np.stack([e[i] for i in refs]),
                                                     tuple(Reference(str(i), "-") for i in refs), model_name,
                                                     metric=metric)
                    if rule == "before":
                        ident = ident.with_threshold(calibrate_threshold(ident.embeddings, metric=metric,
                                                                         min_references=1))
                    for i, x in enumerate(e):
                        if i not in refs:
                            m = ident.similarity(x) - ident.threshold
                            ga[0] += m >= 0
                            ga[1] += 1
                            worst[0] = min(worst[0], m)
                    for other, xs in emb.items():
                        if other != person:
                            for x in xs:
                                m = ident.similarity(x) - ident.threshold
                                fa[0] += m >= 0
                                fa[1] += 1
                                worst[1] = max(worst[1], m)
                    for f in stranger_faces:
                        m = ident.similarity(f.embedding) - ident.threshold
                        sa[0] += m >= 0
                        sa[1] += 1
                        worst[1] = max(worst[1], m)
            label = ("pair threshold" if k < 3 else "calibrated") if rule == "now" else "calibrated (before)"
            rows.append((k, label, pct(ga), pct(fa), pct(sa), f"{worst[0]:+.3f} / {-worst[1]:+.3f}"))
    return rows


def pct(x) -> str:
    hits, n = x
    return f"{100 * hits / max(n, 1):.1f}% ({hits}/{n})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=Path, default=FACES)
    ap.add_argument("--models", default="dlib,dlib-cnn,buffalo_l")
    ap.add_argument("--frames", type=int, default=24, help="frames per size for the frame timing")
    ap.add_argument("--counts", action="store_true",
                    help="only the table of identities from 1, 2, 3, 4 references (first model)")
    args = ap.parse_args(argv)
    if not (args.faces / "people").is_dir():
        print(f"no real faces at {args.faces} (expected people/<person>/*.jpg): nothing to measure")
        return 2
    print(f"faces: {args.faces}; CPU threads: {os.cpu_count()}")
    if args.counts:
        model = args.models.split(",")[0]
        emb = load_face_model(model)
        people, _, _ = embed_people(emb, args.faces)
        print(f"\n{model}: identities from k references, judged on every other photo and the strangers")
        print("\n| references | threshold | genuine accept (held-back photos) | cast impostor false accept "
              "(per pair) | stranger false accept (per pair) | worst margin: genuine / others |")
        print("| ---: | --- | --- | --- | --- | --- |")
        for r in reference_counts(people, strangers(emb, args.faces), emb.name, emb.metric):
            print("| " + " | ".join(map(str, r)) + " |")
        return 0
    rows, timing = [], []
    for model in args.models.split(","):
        try:
            emb = load_face_model(model)
        except ModelNotFoundError as exc:
            rows.append((model, f"not installed here ({str(exc).split('.')[0]})"))
            continue
        people, seconds, n_faces = embed_people(emb, args.faces)
        missed = sum(f is None for rs in people.values() for _, f in rs)
        photos = sum(len(rs) for rs in people.values())
        cast, held = build_cast(people, emb.name, emb.metric)
        stranger_faces = strangers(emb, args.faces)
        thr = [c.threshold for c in cast.values()]
        variants = [(f"{model} (calibrated, {min(thr):.2f}..{max(thr):.2f})", None)]
        if emb.metric == "euclidean":
            variants += [(f"{model} @ distance 0.60", 0.40), (f"{model} @ distance 0.55", 0.45)]
        for label, fixed in variants:
            ga, fa, sp, sa, mg = rates(cast, held, stranger_faces, fixed)
            rows.append((label, pct(ga), pct(fa), pct(sp), pct(sa), f"{mg[0]:+.3f} / {-mg[1]:+.3f}",
                         swap_checks(emb, cast if fixed is None else
                                     {n: i.with_threshold(fixed) for n, i in cast.items()}, args.faces)))
        ft = frame_times(emb, cast, args.faces, args.frames)
        timing.append((model, f"{1000 * seconds / max(n_faces, 1):.0f}", f"{photos - missed}/{photos}",
                       len(stranger_faces), f"{ft['512x288']:.0f}", f"{ft['1280x720']:.0f}",
                       f"{ft['512x288 found']:.0%} / {ft['1280x720 found']:.0%}"))
    print("\n| model (thresholds) | genuine accepted as themselves only | cast impostor false accept "
          "(per pair) | stranger false accept (per pair) | strangers accepted as anyone | worst margin: "
          "genuine / others | swaps caught |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(map(str, r)) + (" |" if len(r) > 2 else " | | | | | |"))
    print("\n| model | ms per face (photos) | photos with a face found | stranger faces found "
          "| ms per checked frame 512x288 | ms per checked frame 1280x720 | face found in frame |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in timing:
        print("| " + " | ".join(map(str, r)) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
