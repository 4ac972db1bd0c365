"""`vswin probe`: table and JSON of what the reader sees, problems flagged, exit codes 0/1/2."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import media  # tests/media.py (pytest puts tests/ on sys.path)
from vswin_cli.cli import app


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    media.require_ffmpeg()
    d = tmp_path_factory.mktemp("probe")
    media.encode(d / "good.mp4", frames=10, extra=["-movflags", "+faststart"])
    media.rotated(d / "good.mp4", d / "rotated.mp4", 90)
    media.encode(d / "vfr.mp4", frames=6, times=[0, 0.04, 0.08, 0.5, 1.5, 1.54])
    (d / "sub").mkdir()
    media.encode(d / "sub" / "nested.avi", frames=5, codec="mjpeg", pix_fmt="yuvj420p")
    (d / "notes.txt").write_text("not a video")
    return d


def probe_json(*args: str) -> tuple[int, list[dict]]:
    result = CliRunner().invoke(app, ["probe", *args, "--format", "json"])
    return result.exit_code, json.loads(result.stdout)


def test_good_files_exit_0_with_their_fields(folder):
    code, rows = probe_json(str(folder / "good.mp4"))
    assert code == 0
    (row,) = rows
    assert row["status"] == "ok" and row["error"] is None and row["problems"] == []
    assert (row["frames"], row["container_frames"], row["width"], row["height"]) == (10, 10, 64, 48)
    assert row["fps"] == 25 and row["duration"] == pytest.approx(0.4) and row["codec"] == "h264"


def test_rotation_and_variable_frame_rate_are_flagged_but_not_failures(folder):
    code, rows = probe_json(str(folder / "rotated.mp4"), str(folder / "vfr.mp4"))
    assert code == 0
    rotated, vfr = rows
    assert rotated["rotation"] in (90, 270) and (rotated["width"], rotated["height"]) == (48, 64)
    assert any("rotated" in p for p in rotated["problems"])
    assert vfr["variable_frame_rate"] and any("variable frame rate" in p for p in vfr["problems"])


def test_broken_files_exit_1_with_reasons(folder, tmp_path):
    media.truncated(folder / "good.mp4", tmp_path / "cut.mp4", 0.6)
    media.text_file(tmp_path / "text.mp4")
    media.empty(tmp_path / "empty.mp4")
    code, rows = probe_json(str(folder / "good.mp4"), str(tmp_path / "cut.mp4"), str(tmp_path / "text.mp4"), str(tmp_path / "empty.mp4"))
    assert code == 1
    good, cut, text, empty = rows
    assert good["status"] == "ok"
    if cut["status"] == "ok":  # some frames decode: the shortfall is a problem, not a failure
        assert any("frames the container announced" in p for p in cut["problems"])
        assert cut["frames"] < cut["container_frames"] == 10
    else:
        assert "truncated" in cut["error"]
    assert text == {"path": str(tmp_path / "text.mp4"), "status": "error", "error": "not a video (a text file)",
                    "problems": ["not a video (a text file)"]}
    assert empty["error"] == "empty file (0 bytes)"


def test_folders_list_videos_non_recursive_unless_r(folder):
    code, rows = probe_json(str(folder))
    assert code == 0
    assert sorted(Path(r["path"]).name for r in rows) == ["good.mp4", "rotated.mp4", "vfr.mp4"]
    code, rows = probe_json(str(folder), "-r")
    assert sorted(Path(r["path"]).name for r in rows) == ["good.mp4", "nested.avi", "rotated.mp4", "vfr.mp4"]


def test_table_output(folder, tmp_path):
    media.text_file(tmp_path / "text.mp4")
    result = CliRunner().invoke(app, ["probe", str(folder / "rotated.mp4"), str(tmp_path / "text.mp4")])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["path", "frames", "fps", "duration"]
    assert "48x64" in lines[1] and "rotated" in lines[1]
    assert "error: not a video (a text file)" in lines[2]


def test_missing_path_is_a_usage_error(vswin, tmp_path):
    done = vswin("probe", str(tmp_path / "nope.mp4"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: no such file or folder: {tmp_path / 'nope.mp4'}"


def test_the_table_shows_file_names_as_they_are(folder, tmp_path):
    # Square brackets are Rich markup: a name could turn the table red, or end it with a traceback.
    (tmp_path / "[").mkdir()
    names = [tmp_path / "clip [red].mp4", tmp_path / "[" / "b]x.mp4"]  # the second one: ".../[/b]x.mp4"
    for name in names:
        name.write_bytes((folder / "good.mp4").read_bytes())
    result = CliRunner().invoke(app, ["probe", *map(str, names), "--format", "table"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{names[0]} ") for line in lines)
    assert any(line.startswith(f"{tmp_path}/[/b]x.mp4 ") for line in lines)


def test_a_folder_without_videos_is_a_usage_error(vswin, tmp_path):
    # Was: exit 0 with an empty table, as if every file had probed fine.
    (tmp_path / "notes.txt").write_text("not a video")
    done = vswin("probe", str(tmp_path))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == ["warning: skipped 1 file(s) that are not videos", "error: no videos found in the given paths"]


def test_stderr_ends_with_the_count_of_good_and_bad_files(folder, tmp_path):
    media.text_file(tmp_path / "text.mp4")
    result = CliRunner().invoke(app, ["probe", str(folder / "good.mp4"), str(folder / "vfr.mp4"), str(tmp_path / "text.mp4"), "--format", "json"])
    assert result.exit_code == 1
    assert len(json.loads(result.stdout)) == 3  # stdout holds only the JSON
    assert result.stderr.splitlines()[-1] == "2 ok, 1 failed"


def test_piped_table_keeps_each_file_on_one_line(folder, tmp_path):
    # Was: rows wider than 200 columns wrapped onto a second line, and a newline in a file name
    # split its row: `vswin probe dir | grep` missed what it looked for.
    odd = tmp_path / ("new\nline " + "x" * 150 + ".mp4")
    odd.write_bytes((folder / "good.mp4").read_bytes())
    media.text_file(tmp_path / "text.mp4")
    result = CliRunner().invoke(app, ["probe", str(odd), str(tmp_path / "text.mp4"), str(folder / "rotated.mp4")])
    assert result.exit_code == 1
    header, *rows = result.stdout.splitlines()
    assert header.split()[0] == "path" and len(rows) == 3
    assert rows[0].startswith(str(tmp_path / ("new\\nline " + "x" * 150 + ".mp4 "))) and " 64x48 " in rows[0]
    assert rows[1].rstrip().endswith("error: not a video (a text file)")
    assert rows[2].rstrip().endswith("rotated 90 degrees by its metadata (frames are turned upright)") or "rotated 270" in rows[2]


def test_narrow_terminal_folds_long_paths_and_keeps_the_values(folder, tmp_path, monkeypatch):
    # Was: on an 80-column terminal a long path took the whole width and every other column,
    # the error reason too, shrank to "…".
    deep = tmp_path / ("a_long_folder_name_" * 5)
    deep.mkdir()
    (deep / "good.mp4").write_bytes((folder / "good.mp4").read_bytes())
    media.text_file(deep / "text.mp4")
    for name in ("NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich writes as to a terminal ...
    monkeypatch.setenv("COLUMNS", "80")  # ... of 80 columns
    result = CliRunner().invoke(app, ["probe", str(deep)])
    assert result.exit_code == 1
    text = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert re.search(r" 10 +25 +0\.40s +64x48 +0 +h264 ", text), text
    header, *lines = text.splitlines()
    problems = " ".join(line[header.index("problems"):].strip() for line in lines)
    assert "error: not a video (a text file)" in problems  # wrapped, not cut
    paths = "".join(line[:header.index("frames")].strip() for line in lines)
    assert paths == f"{deep / 'good.mp4'}{deep / 'text.mp4'}"  # folded, every character kept


def test_a_file_that_breaks_probing_unexpectedly_costs_its_row_only(folder, monkeypatch):
    # Was: a MemoryError (a 50 GiB index read whole) ended probe in a traceback, losing every row.
    from vswin_cli import video

    real_probe = video.probe

    def probe_or_fail(path, *args, **kwargs):
        if Path(path).name == "rotated.mp4":
            raise MemoryError
        return real_probe(path, *args, **kwargs)

    monkeypatch.setattr(video, "probe", probe_or_fail)
    code, rows = probe_json(str(folder / "rotated.mp4"), str(folder / "good.mp4"))
    assert code == 1
    assert [(Path(row["path"]).name, row["status"], row["error"]) for row in rows] == [
        ("rotated.mp4", "error", "out of memory while probing this file"), ("good.mp4", "ok", None)]


def test_a_narrow_terminal_still_shows_every_files_name_and_error(folder, tmp_path, vswin):
    # Was: at 50 columns Rich squeezed the path and problems columns out: a row of dashes, no name, no reason.
    bad = tmp_path / "bád.mp4"
    bad.write_text("not a video")
    done = vswin("probe", folder / "good.mp4", bad, env={"COLUMNS": "40", "FORCE_COLOR": "1", "TERM": "xterm"})
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stdout)
    assert done.returncode == 1
    assert str(folder / "good.mp4") in text.replace("\n", "") and "frames=10" in text
    assert str(bad) in text.replace("\n", "") and "error: not a video (a text file)" in " ".join(text.split())


def test_a_non_ascii_name_opens_under_a_locale_that_is_not_utf8(folder, tmp_path, vswin):
    # Was: under LC_ALL=de_DE.ISO-8859-1 Python reads the name "café.mp4" as "cafÃ©.mp4"; OpenCV encoded
    # that anew as UTF-8, found no such file, and a good video was failed as "damaged or unsupported".
    if shutil.which("localedef") is None:
        pytest.skip("localedef is not installed: no Latin-1 locale can be made")
    locales = tmp_path / "locales"
    locales.mkdir()
    made = subprocess.run(["localedef", "-i", "de_DE", "-f", "ISO-8859-1", str(locales / "de_DE.ISO-8859-1")],
                          capture_output=True, text=True)
    if not (locales / "de_DE.ISO-8859-1").is_dir():
        pytest.skip(f"no Latin-1 locale could be made: {made.stderr.strip()[-200:]}")
    video = tmp_path / "café.mp4"
    shutil.copy(folder / "good.mp4", video)
    latin1 = {"LOCPATH": str(locales), "LC_ALL": "de_DE.ISO-8859-1", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    check = subprocess.run([sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"],
                           capture_output=True, text=True, env={**os.environ, **latin1})
    assert check.stdout.strip() == "iso8859-1"  # else this test would not test the case
    done = vswin("probe", video, "--format", "json", env=latin1)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["status"] == "ok"
