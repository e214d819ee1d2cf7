"""The shot list: schema, every validation error located by line and column, scenes, timing."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from keyrender.core.shotlist import ShotListError, UnknownColumnWarning, load_shotlist, parse_fps
from helpers import heavy_imports

def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 150)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()  # a real image: validation reads its header and checks it is whole


def write(tmp_path: Path, text: str, name: str = "shots.csv", encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def errors_of(path: Path, cast=("anna", "ben")) -> list[str]:
    with pytest.raises(ShotListError) as info:
        load_shotlist(path, cast=cast)
    return [str(i) for i in info.value.issues]


def test_good_file_parses_timing_scenes_and_defaults(tmp_path):
    (tmp_path / "a.png").write_bytes(PNG)
    p = write(tmp_path, (
        "scene,shot,prompt,characters,duration,fps,keyframes,keyframe_images,style,seed\n"
        "1,1A,hello,anna;ben,2,23.976,3,a.png;;a.png,noir,5\n"
        "1,1B,again,anna,1,,,,,\n"
        "2,2A,there,,,,0;0.5;1,,,\n".replace("2A,there,,,,", "2A,there,,1,30000/1001,")
    ))
    sl = load_shotlist(p, cast=["anna", "ben"])
    a, b, c = sl.shots
    assert a.fps == Fraction(24000, 1001) and a.frames == round(2 * Fraction(24000, 1001)) == 48
    assert a.keyframe_frames == (0, 24, 47)
    assert a.keyframe_images[0] == tmp_path / "a.png" and a.keyframe_images[1] is None
    assert not a.storyboard and a.characters == ("anna", "ben") and a.seed == 5
    assert b.fps == 24 and b.frames == 24 and b.keyframe_frames == (0, 23)  # default: 1 per second + 1
    assert c.fps == Fraction(30000, 1001) and c.keyframe_frames[0] == 0 and c.keyframe_frames[-1] == c.frames - 1
    assert [s.id for s in sl.scenes] == ["1", "2"]
    assert sl.scenes[0].style == "noir" and len(sl.scenes[0].shots) == 2
    assert b.seed == load_shotlist(p, cast=["anna", "ben"]).shots[1].seed  # default seed is stable


def test_every_mistake_is_reported_with_line_and_column(tmp_path):
    p = write(tmp_path, (
        "scene,shot,prompt,characters,duration,fps,width,height,keyframes,keyframe_images\n"
        "1,A,ok,anna,2,24,512,288,3,\n"            # line 2: fine
        "1,A,dup,anna,2,24,,,,\n"                  # line 3: duplicate id
        "1,B,x,zoe,2,24,,,,\n"                     # line 4: unknown character
        "1,C,x,,abc,24,,,,\n"                      # line 5: non-numeric duration
        "1,D,x,,2,-5,,,,\n"                        # line 6: negative fps
        "1,E,x,,2,24,500,288,,\n"                  # line 7: width not a multiple of 8
        "1,F,x,,2,24,99992,288,,\n"                # line 8: absurd width
        "1,G,x,,2,24,,,2,missing.png\n"            # line 9: missing image
        "1,H,x,,2,24,,,1,\n"                       # line 10: too few keyframes
        "1,I,x,,1,24,,,2,a.png;a.png;a.png\n"      # line 11: more images than keyframes
    ))
    (tmp_path / "a.png").write_bytes(PNG)
    errs = errors_of(p)
    text = "\n".join(errs)
    for line, col, words in [
        (3, "shot", "duplicate shot id 'A' (first on line 2)"),
        (4, "characters", "unknown character 'zoe'"),
        (5, "duration", "'abc' is not a positive number"),
        (6, "fps", "'-5' is not a frame rate"),
        (7, "width", "500 is not a multiple of 8"),
        (8, "width", "outside 64..4096"),
        (9, "keyframe_images", "'missing.png' not found"),
        (10, "keyframes", "at least 2"),
        (11, "keyframe_images", "3 keyframe images for 2 keyframes"),
    ]:
        assert any(e.startswith(f"{p}:{line}: column '{col}'") and words in e for e in errs), (line, words, text)
    assert len(errs) == 9, text


def test_missing_columns_empty_file_encoding_and_delimiter(tmp_path):
    assert "required column 'prompt' is missing" in errors_of(write(tmp_path, "scene,shot,duration\n1,a,2\n"))[0]
    assert "empty" in errors_of(write(tmp_path, "\n\n", "e.csv"))[0]
    assert "no shots" in errors_of(write(tmp_path, "scene,shot,prompt,duration\n", "h.csv"))[0]
    latin = write(tmp_path, "scene,shot,prompt,duration\n1,a,caf\u00e9,2\n", "l.csv", encoding="latin-1")
    err = errors_of(latin)[0]
    assert "not UTF-8" in err and ":2" in err
    assert "semicolons" in errors_of(write(tmp_path, "scene;shot;prompt;duration\n1;a;x;2\n", "s.csv"))[0]
    assert "needs a 'duration' or a 'frames'" in errors_of(write(tmp_path, "scene,shot,prompt\n1,a,x\n", "d.csv"))[0]
    with pytest.raises(ShotListError, match="no such file"):
        load_shotlist(tmp_path / "nope.csv")


def test_unknown_column_warns_and_bom_is_fine(tmp_path):
    p = write(tmp_path, "\ufeffscene,shot,prompt,duration,mood\n1,a,x,1,happy\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sl = load_shotlist(p)
    assert sl.unknown_columns == ("mood",)
    assert any(issubclass(w.category, UnknownColumnWarning) and "'mood'" in str(w.message) for w in caught)


def test_style_is_locked_per_scene(tmp_path):
    p = write(tmp_path, "scene,shot,prompt,duration,style\n1,a,x,1,noir\n1,b,x,1,\n1,c,x,1,pastel\n2,d,x,1,pastel\n")
    errs = errors_of(p)
    assert len(errs) == 1 and ":4: column 'style'" in errs[0] and "locked per scene" in errs[0]


def test_keyframe_times_frames_duration_agreement(tmp_path):
    p = write(tmp_path, (
        "scene,shot,prompt,duration,frames,keyframes\n"
        "1,a,x,2,48,0;1;2\n"      # fine: times in seconds, last = the end
        "1,b,x,2,50,\n"           # frames disagree with duration
        "1,c,x,2,,0.5;2\n"        # does not start at 0
        "1,d,x,2,,0;3\n"          # past the end
        "1,e,x,2,,0;1;0.5;2\n"    # not increasing
    ))
    errs = errors_of(p)
    assert len(errs) == 4
    assert "disagrees" in errs[0] and "start at 0" in errs[1] and "outside the shot" in errs[2] and "increase" in errs[3]
    ok = write(tmp_path, "scene,shot,prompt,frames,keyframes\n1,a,x,48,0;1;2\n", "ok.csv")
    assert load_shotlist(ok).shots[0].keyframe_frames == (0, 24, 47)


def test_layout_beats_refine_and_prompts(tmp_path):
    p = write(tmp_path, (
        "scene,shot,prompt,characters,duration,keyframes,beats,layout,camera,refine,identity_strength\n"
        "1,a,two friends,anna;ben,2,3,sits;stands;waves,\"anna:left;ben:0.5,0,1,1\",pan left,off,0.9\n"
    ))
    s = load_shotlist(p, cast=["anna", "ben"]).shots[0]
    assert s.layout == {"anna": (0.0, 0.0, 0.5, 1.0), "ben": (0.5, 0.0, 1.0, 1.0)}
    assert s.refine is False and s.identity_strength == 0.9
    assert s.keyframe_prompts() == ["two friends, sits, pan left", "two friends, stands, pan left", "two friends, waves, pan left"]
    bad = write(tmp_path, (
        "scene,shot,prompt,characters,duration,layout,refine,identity_strength,control_type\n"
        "1,a,x,anna,2,zoe:left,maybe,7,sketch\n"
    ), "bad.csv")
    errs = errors_of(bad)
    assert {e.split("column ")[1].split(":")[0] for e in errs} == {"'layout'", "'refine'", "'identity_strength'", "'control_type'"}


def test_unreadable_image_and_quotes(tmp_path):
    (tmp_path / "fake.png").write_bytes(b"this is not a png at all")
    p = write(tmp_path, 'scene,shot,prompt,duration,keyframe_images\n1,a,"x, with comma",1,fake.png\n1,b,x,1,notes.txt\n')
    errs = errors_of(p)
    assert "fake.png' is not a readable image" in errs[0] and ":2:" in errs[0]
    assert "not an image file" in errs[1] and ":3:" in errs[1]


def test_an_image_name_with_a_nul_character_is_a_located_error(tmp_path):
    """Found by the fuzz test: a NUL in a keyframe image's name reached the file system (ValueError)."""
    p = write(tmp_path, "scene,shot,prompt,duration,keyframe_images\n1,a,x,1,a\0b.png\n")
    (err,) = errors_of(p)
    assert ":2:" in err and "keyframe_images" in err and "NUL character" in err


@pytest.mark.parametrize("text,expected", [
    ("24", Fraction(24)), ("23.976", Fraction(24000, 1001)), ("29.97", Fraction(30000, 1001)),
    ("59.94", Fraction(60000, 1001)), ("25", Fraction(25)), ("24000/1001", Fraction(24000, 1001)), ("12.5", Fraction(25, 2)),
])
def test_fps_is_exact(text, expected):
    assert parse_fps(text) == expected


def test_only_selects_and_rejects_unknown(tmp_path):
    p = write(tmp_path, "scene,shot,prompt,duration\n1,a,x,1\n1,b,x,1\n")
    sl = load_shotlist(p)
    assert [s.id for s in sl.select(["b"])] == ["b"]
    with pytest.raises(Exception, match="unknown shot zz"):
        sl.select(["zz"])


def test_module_imports_no_torch():

    assert heavy_imports("import keyrender.core.shotlist, keyrender.pipeline, keyrender.cli") == []
    assert np  # numpy is fine


def test_hedge_column_parses_and_every_bad_value_is_located(tmp_path):
    p = write(tmp_path, "scene,shot,prompt,duration,hedge\n1,a,x,1,0\n1,b,x,1,1\n1,c,x,1,0.25\n1,d,x,1,\n")
    assert [s.hedge for s in load_shotlist(p).shots] == [0.0, 1.0, 0.25, None]  # blank: the run's default
    assert load_shotlist(write(tmp_path, "scene,shot,prompt,duration\n1,a,x,1\n", "none.csv")).shots[0].hedge is None
    bad = write(tmp_path, "scene,shot,prompt,duration,hedge\n1,a,x,1,-0.1\n1,b,x,1,1.5\n1,c,x,1,abc\n1,d,x,1,nan\n1,e,x,1,0.5\n", "bad.csv")
    errs = errors_of(bad)
    assert errs == [
        f"{bad}:2: column 'hedge': '-0.1' is not a number in 0..1",
        f"{bad}:3: column 'hedge': '1.5' is not a number in 0..1",
        f"{bad}:4: column 'hedge': 'abc' is not a number in 0..1",
        f"{bad}:5: column 'hedge': 'nan' is not a number in 0..1",
    ]


def test_shot_ids_that_differ_only_in_case_are_refused(tmp_path):
    # each shot's folder is named by its id: on macOS's and Windows' default (case-insensitive)
    # file systems '1a' and '1A' would be one folder, the second shot overwriting the first
    p = write(tmp_path, "scene,shot,prompt,duration\n1,1a,x,2\n1,1A,y,2\n")
    errs = errors_of(p)
    assert len(errs) == 1 and errs[0].startswith(f"{p}:3: column 'shot'"), errs
    assert "duplicate shot id '1A' (first on line 2 as '1a'" in errs[0] and "case-insensitive" in errs[0]
