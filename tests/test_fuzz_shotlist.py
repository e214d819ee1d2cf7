"""Property-based fuzzing of the shot-list reader (hypothesis): arbitrary bytes and mutated valid
sheets never hang, never raise anything but ShotListError whose every issue has a line (or names
the whole file), and a malformed row never becomes a shot."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from keyrender.core.shotlist import ShotListError, load_shotlist  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
VALID = (SAMPLES / "shotlist.csv").read_bytes()
# correctness, not speed: no deadline (a loaded 2-core machine missed the old 2 s one)
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# cells chosen to break things: huge exponents, quotes, separators, line ends, NUL, long text
NASTY = ["1e1000000000", "1e-1000000000", "1e5000", "-1", "0", "nan", "inf", "1/0", '"', '""', ",", ";",
         "\r", "\n", "\r\n", "\0", "x" * 300, "../../etc/passwd", "/dev/zero", "24000/1001", "é", "\ufeff"]


def _read(path: Path):
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_shotlist(path, cast=["eileen"])
    except ShotListError as exc:
        assert exc.issues, "a ShotListError without issues"
        for issue in exc.issues:
            assert issue.path == path
            assert issue.line is None or issue.line >= 1
        return exc
    finally:
        assert time.perf_counter() - t0 < 2.0, "the reader took over 2 s"


def _sheet(shared_project: Path, data: bytes) -> Path:
    p = shared_project / "fuzz.csv"
    p.write_bytes(data)
    return p


@pytest.fixture(scope="module")
def shared_project(tmp_path_factory, copy_sample):
    return copy_sample(tmp_path_factory.mktemp("fuzz") / "proj")


@SETTINGS
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes(shared_project, data):
    _read(_sheet(shared_project, data))


@SETTINGS
@given(ops=st.lists(st.tuples(st.integers(0, len(VALID)), st.integers(0, 8), st.sampled_from(NASTY)),
                    min_size=1, max_size=4))
def test_mutated_valid_sheet_never_renders_a_malformed_row(shared_project, ops):
    data = VALID.decode()
    for pos, cut, text in ops:
        data = data[:pos] + text + data[pos + cut:]
    result = _read(_sheet(shared_project, data.encode()))
    if isinstance(result, ShotListError):
        return
    # it parsed: every shot is a well-formed row of the sheet as the csv module reads it
    import csv
    import io

    rows = list(csv.reader(io.StringIO(data.lstrip("\ufeff"), newline="")))
    width = len(next(r for r in rows if any(c.strip() for c in r)))
    for shot in result.shots:
        assert shot.frames >= 1 and 0 < shot.fps <= 240 and shot.keyframe_frames[0] == 0
        assert shot.keyframe_frames[-1] == shot.frames - 1 and len(shot.keyframe_images) == len(shot.keyframe_frames)
        assert not any(c in shot.id for c in "\r\n,\"") and len(shot.row) <= width
        assert all(p is None or p.is_file() for p in shot.keyframe_images)


@SETTINGS
@given(cell=st.sampled_from(NASTY) | st.text(max_size=40), column=st.integers(0, 10))
def test_one_bad_cell_in_a_row_is_located_or_accepted(shared_project, cell, column):
    lines = VALID.decode().splitlines()
    header = lines[0].split(",")
    fields = next(__import__("csv").reader([lines[1]]))
    fields[column] = cell
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(fields)
    data = "\n".join([lines[0], buf.getvalue().rstrip("\n"), *lines[2:]]) + "\n"
    result = _read(_sheet(shared_project, data.encode()))
    if isinstance(result, ShotListError):
        assert all(i.line is not None for i in result.issues), result
        assert any(i.line == 2 for i in result.issues), result  # the bad row, not another
        assert all(i.line == 2 or "scene" in str(i) for i in result.issues), result
    else:
        # accepted: the same three shots (a cell holding a line break moves the later lines down)
        assert [s.id for s in result.shots][1:] == ["1B", "2A"] and len(header) == len(fields)
        assert [s.line for s in result.shots][0] == 2
