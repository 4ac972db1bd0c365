"""Records and their writers: formats, atomic files, journals, --resume, features on disk.

Expected values are written out by hand here (or parsed back with the standard json/csv/numpy
readers), never produced by the code under test.
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vswin_cli.errors import VswinError
from vswin_cli.atomic_files import write_json_atomic, write_npy_atomic, write_text_atomic
from vswin_cli.feature_index import FeatureEntry, feature_path, open_feature_index, plan_feature_paths, sidecar_path
from vswin_cli.formats import read_records, select_format
from vswin_cli.journals import journal_path
from vswin_cli.output_claims import claim_output
from vswin_cli.result_sinks import open_sink
from vswin_cli.records import ClipResult, Prediction, VideoRecord, top_k_predictions

REPO = Path(__file__).resolve().parents[1]
VIEWS = {"clips": 4, "crops": 3, "clip_len": 32, "frame_interval": 2}
# Kinetics-400 has names with commas; quotes and non-ASCII are there to stress the writers.
LABELS = ["abseiling", "arm wrestling", 'massaging person\'s head, "gently"', "pêche à la mouche"]


def ok_record(path: str, model: str = "swin-t-k400", views: dict | None = None) -> VideoRecord:
    return VideoRecord(
        path=path,
        status="ok",
        model=model,
        video={"frames": 300, "fps": 29.97, "duration": 10.01, "width": 640, "height": 360, "rotation": 0},
        views=dict(VIEWS if views is None else views),
        predictions=[
            Prediction(1, 2, LABELS[2], 0.7123456789012345),
            Prediction(2, 3, LABELS[3], 0.2),
            Prediction(3, 1, LABELS[1], 1e-7),
        ],
        clips=[ClipResult(0.93, 3.18, [27, 29, 31], [Prediction(1, 2, LABELS[2], 0.88)])],
    )


def error_record(path: str, model: str = "swin-t-k400") -> VideoRecord:
    return VideoRecord.failure(path, "not a video: no video stream", model=model, views=dict(VIEWS))


def add_all(sink, records) -> None:
    with sink:
        for record in records:
            sink.add(record)


# --------------------------------------------------------------------------- records


def test_top_k_orders_by_score_and_breaks_ties_by_lower_index():
    probs = np.array([0.1, 0.3, 0.3, 0.05, 0.25], dtype=np.float32)
    top = top_k_predictions(probs, ["a", "b", "c", "d", "e"], 3)
    assert [(p.rank, p.index, p.label) for p in top] == [(1, 1, "b"), (2, 2, "c"), (3, 4, "e")]
    assert top[0].score == float(np.float32(0.3))  # the float32 value, exactly
    assert isinstance(top[0].score, float) and isinstance(top[0].index, int)


def test_top_k_larger_than_classes_or_zero():
    assert [p.index for p in top_k_predictions([0.5, 0.5], ["a", "b"], 5)] == [0, 1]
    assert top_k_predictions([0.5, 0.5], ["a", "b"], 0) == []
    with pytest.raises(ValueError):
        top_k_predictions([0.5, 0.5], ["a"], 1)


def test_record_dict_follows_the_design_example():
    # The example record of DESIGN.md, "Output", typed in.
    design = {
        "path": "clips/a.mp4",
        "status": "ok",
        "error": None,
        "warnings": [],
        "model": "swin-t-k400",
        "video": {"frames": 300, "fps": 29.97, "duration": 10.01, "width": 640, "height": 360, "rotation": 0},
        "views": {"clips": 4, "crops": 3, "clip_len": 32, "frame_interval": 2},
        "predictions": [{"rank": 1, "index": 6, "label": "arm wrestling", "score": 0.91}],
        "clips": [
            {
                "start": 0.93,
                "end": 3.18,
                "frames": [27, 29, 31],
                "predictions": [{"rank": 1, "index": 6, "label": "arm wrestling", "score": 0.88}],
            }
        ],
    }
    record = VideoRecord.from_dict(design)
    assert record.clips[0].frames == [27, 29, 31]
    assert record.predictions[0] == Prediction(1, 6, "arm wrestling", 0.91)
    assert record.to_dict() == design
    assert list(record.to_dict()) == list(design)  # field order too
    assert json.dumps(record.to_dict()) == json.dumps(design)


def test_failure_record_is_one_line():
    record = VideoRecord.failure("x.mp4", "cannot decode\n  truncated file", model="m")
    assert record.to_dict()["status"] == "error"
    assert record.error == "cannot decode truncated file"
    assert record.predictions == [] and record.clips == []


# --------------------------------------------------------------------------- format selection


@pytest.mark.parametrize(
    ("fmt", "output", "tty", "expected"),
    [
        ("csv", None, True, "csv"),
        ("json", "out.csv", False, "json"),  # --format wins over the extension
        (None, "out.json", True, "json"),
        (None, "out.JSONL", True, "jsonl"),
        (None, "out.csv", False, "csv"),
        (None, None, True, "table"),
        (None, None, False, "jsonl"),
    ],
)
def test_format_selection(fmt, output, tty, expected):
    assert select_format(fmt, None if output is None else Path(output), tty) == expected


def test_format_selection_refuses_what_it_cannot_write():
    with pytest.raises(VswinError, match=r"\.json, \.jsonl or \.csv"):
        select_format(None, Path("out.txt"), False)
    with pytest.raises(VswinError, match="terminal"):
        select_format("table", Path("out.json"), False)
    with pytest.raises(VswinError, match="-o"):
        open_sink(None, "jsonl", resume=True, stream=io.StringIO())


def test_output_that_is_a_folder_is_a_usage_error(tmp_path):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(VswinError, match="folder"):
        open_sink(tmp_path / "out.json", None)


def test_folder_without_format_is_named_a_folder(tmp_path):
    with pytest.raises(VswinError, match=r"is a folder; give a file name") as caught:
        select_format(None, tmp_path, False)
    assert "extension" not in str(caught.value)


# --------------------------------------------------------------------------- round trips

NASTY_PATHS = ["clips/a, b \"quoted\".mp4", "vidéos/été 2024/日本.mp4", "plain.mp4"]


def nasty_records() -> list[VideoRecord]:
    return [ok_record(NASTY_PATHS[0]), error_record(NASTY_PATHS[1]), ok_record(NASTY_PATHS[2])]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_json_files_round_trip(tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    records = nasty_records()
    add_all(open_sink(out, None, model="swin-t-k400", views=VIEWS), records)
    text = out.read_text(encoding="utf-8")
    parsed = json.loads(text) if suffix == ".json" else [json.loads(line) for line in text.splitlines()]
    assert parsed == [r.to_dict() for r in records]
    assert parsed[0]["predictions"][0]["score"] == 0.7123456789012345
    assert "日本" in text  # UTF-8 as is, not \u escapes
    assert read_records(out) == records


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_stdout_round_trip(fmt):
    stream = io.StringIO()
    records = nasty_records()
    add_all(open_sink(None, fmt, stream=stream), records)
    text = stream.getvalue()
    parsed = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
    assert parsed == [r.to_dict() for r in records]


def test_json_stdout_with_no_videos_is_an_empty_array():
    stream = io.StringIO()
    open_sink(None, "json", stream=stream).close()
    assert json.loads(stream.getvalue()) == []


def expected_csv_rows() -> list[list[str]]:
    # By hand: k=4 columns; the error record and the missing 4th rank are empty cells.
    good = [LABELS[2], "0.7123456789012345", LABELS[3], "0.2", LABELS[1], "1e-07", "", ""]
    return [
        ["path", "status", *[f"{c}_{i}" for i in range(1, 5) for c in ("label", "score")], "error"],
        [NASTY_PATHS[0], "ok", *good, ""],
        [NASTY_PATHS[1], "error", "", "", "", "", "", "", "", "", "not a video: no video stream"],
        [NASTY_PATHS[2], "ok", *good, ""],
    ]


def test_csv_file_round_trip(tmp_path):
    out = tmp_path / "out.csv"
    add_all(open_sink(out, None, top_k=4, model="swin-t-k400", views=VIEWS), nasty_records())
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows == expected_csv_rows()
    assert float(rows[1][3]) == 0.7123456789012345
    back = read_records(out)
    assert [(r.path, r.status, r.error) for r in back] == [
        (NASTY_PATHS[0], "ok", None),
        (NASTY_PATHS[1], "error", "not a video: no video stream"),
        (NASTY_PATHS[2], "ok", None),
    ]
    assert [(p.label, p.score) for p in back[0].predictions] == [
        (LABELS[2], 0.7123456789012345),
        (LABELS[3], 0.2),
        (LABELS[1], 1e-7),
    ]
    assert not journal_path(out).exists()


def test_csv_stdout_streams_header_then_rows():
    stream = io.StringIO()
    sink = open_sink(None, "csv", top_k=4, stream=stream)
    assert stream.getvalue() == ""  # nothing before the first record: a run may yet stop with a usage error
    sink.add(nasty_records()[0])
    assert stream.getvalue().splitlines()[0] == ",".join(expected_csv_rows()[0])
    stream = io.StringIO()
    add_all(open_sink(None, "csv", top_k=4, stream=stream), nasty_records())
    assert list(csv.reader(io.StringIO(stream.getvalue()))) == expected_csv_rows()


@pytest.mark.parametrize("fmt, finished", [("csv", "path,status,label_1,score_1,error\n"), ("json", "[]\n"), ("jsonl", "")])
def test_stdout_of_a_run_with_no_records_is_empty_unless_it_finished(fmt, finished):
    for complete, expected in ((True, finished), (False, "")):
        stream = io.StringIO()
        open_sink(None, fmt, top_k=1, stream=stream).close(complete=complete)
        assert stream.getvalue() == expected


def test_csv_header_has_k_label_score_pairs():
    stream = io.StringIO()
    open_sink(None, "csv", top_k=2, stream=stream).close()
    assert stream.getvalue() == "path,status,label_1,score_1,label_2,score_2,error\n"


def test_undecodable_file_name_survives_jsonl(tmp_path):
    # A Linux file name with a byte that is not UTF-8 arrives as a lone surrogate.
    name = os.fsdecode(b"bad\xff name.mp4")
    out = tmp_path / "out.jsonl"
    add_all(open_sink(out, None), [ok_record(name)])
    line = out.read_bytes().decode("utf-8")  # still valid UTF-8
    assert json.loads(line)["path"] == name
    assert read_records(out)[0].path == name


def test_a_carriage_return_in_a_name_or_label_is_quoted_in_csv(tmp_path):
    # Was: written bare, so csv readers split the row (3 rows for 2 videos) and --resume refused
    # the file vswin itself had written.
    name = "a\rb.mp4"
    record = ok_record(name)
    record.predictions[0] = dataclasses.replace(record.predictions[0], label="act\r0")
    out = tmp_path / "out.csv"
    add_all(open_sink(out, None, top_k=2, model="swin-t-k400", views=VIEWS), [record, ok_record("c.mp4")])
    with out.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(row["path"], row["label_1"]) for row in rows] == [(name, "act\r0"), ("c.mp4", LABELS[2])]
    assert [r.path for r in read_records(out)] == [name, "c.mp4"]
    assert b"\r\n" not in out.read_bytes().replace(b"a\rb", b"").replace(b"act\r0", b"")  # rows still end in \n
    stream = io.StringIO()
    add_all(open_sink(None, "csv", top_k=2, stream=stream), [record])
    assert [row[0] for row in csv.reader(io.StringIO(stream.getvalue(), newline=""))] == ["path", name]


def test_a_name_that_is_not_utf8_is_the_same_bytes_in_a_csv_file_and_on_stdout(tmp_path):
    # stdout showed b'\xff.mp4' as the text "\udcff.mp4": the same as a file literally named so.
    # And on a Latin-1 terminal an emoji was "\U0001f600.mp4": the same as a file literally named so.
    raw, literal, emoji = os.fsdecode(b"\xff.mp4"), "\\udcff.mp4", "\U0001f600.mp4"
    records = [ok_record(raw), ok_record(literal), ok_record(emoji), ok_record("\\U0001f600.mp4")]
    out = tmp_path / "out.csv"
    add_all(open_sink(out, None, top_k=1, model="swin-t-k400", views=VIEWS), records)
    for encoding in ("utf-8", "latin-1"):
        buffer = io.BytesIO()
        stream = io.TextIOWrapper(buffer, encoding=encoding, newline="", write_through=True)
        add_all(open_sink(None, "csv", top_k=1, stream=stream), records)
        stream.flush()
        assert buffer.getvalue() == out.read_bytes(), encoding
    assert [r.path for r in read_records(out)] == [raw, literal, emoji, "\\U0001f600.mp4"]


def test_json_on_a_stream_that_cannot_encode_a_name_stays_valid_json():
    # Was: "\U0001f600" (a Python escape, invalid JSON) on a Latin-1 stdout.
    name = "smile \U0001f600 \u00e9.mp4"
    for fmt in ("json", "jsonl"):
        buffer = io.BytesIO()
        stream = io.TextIOWrapper(buffer, encoding="latin-1", write_through=True)
        add_all(open_sink(None, fmt, stream=stream), [ok_record(name)])
        stream.flush()
        text = buffer.getvalue().decode("latin-1")
        parsed = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
        assert [record["path"] for record in parsed] == [name]


# --------------------------------------------------------------------------- atomic files


def test_failed_rename_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    out = tmp_path / "out.json"
    out.write_text("old", encoding="utf-8")

    def crash(*args):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        write_json_atomic(out, {"a": 1})
    with pytest.raises(OSError):
        write_npy_atomic(tmp_path / "x.npy", np.zeros(3))
    assert out.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_failed_final_write_keeps_old_output_and_journal(tmp_path, monkeypatch):
    out = tmp_path / "out.csv"
    out.write_text("old", encoding="utf-8")
    sink = open_sink(out, None, model="m", views=VIEWS)
    sink.add(ok_record("a.mp4", model="m"))

    def crash(*args):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(VswinError, match="cannot write .*out.csv: disk gone"):
        sink.close()
    assert out.read_text(encoding="utf-8") == "old"
    assert json.loads(journal_path(out).read_text(encoding="utf-8"))["path"] == "a.mp4"


def run_until_ready(script: str, cwd: Path) -> subprocess.Popen:
    """Start ``script``; return once it prints READY (it then waits to be killed)."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip() == "READY", line
    return process


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_json_write_leaves_old_file(tmp_path):
    out = tmp_path / "out.json"
    out.write_text('["old"]\n', encoding="utf-8")
    # The writer is killed after writing the temp file's bytes, before its rename.
    process = run_until_ready(
        """
        import os, sys, time
        from pathlib import Path
        from vswin_cli import atomic_files
        def stall(fd):
            print("READY", flush=True)
            time.sleep(60)
        os.fsync = stall
        atomic_files.write_json_atomic(Path("out.json"), [{"n": i} for i in range(100000)])
        """,
        tmp_path,
    )
    temps = [p for p in tmp_path.iterdir() if p.name != "out.json"]
    assert len(temps) == 1 and temps[0].stat().st_size > 0  # it was mid-write
    kill(process)
    assert json.loads(out.read_text(encoding="utf-8")) == ["old"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_jsonl_line_then_resume_keeps_finished_videos(tmp_path):
    out = tmp_path / "out.jsonl"
    process = run_until_ready(
        """
        import os, time
        from pathlib import Path
        from vswin_cli.result_sinks import open_sink
        from vswin_cli.records import VideoRecord
        views = {"clips": 4, "crops": 3, "clip_len": 32, "frame_interval": 2}
        sink = open_sink(Path("out.jsonl"), None, model="m", views=views)
        for name in ("a.mp4", "b.mp4"):
            sink.add(VideoRecord(name, "ok", model="m", views=views))
        # The third record is half written when the process dies.
        sink._journal._file.write(b'{"path": "c.mp4", "status": "o')
        sink._journal._file.flush()
        print("READY", flush=True)
        time.sleep(60)
        """,
        tmp_path,
    )
    kill(process)
    assert out.read_bytes().endswith(b'"status": "o')
    sink = open_sink(out, None, resume=True, model="m", views=VIEWS)
    assert sink.done("a.mp4") and sink.done("b.mp4") and not sink.done("c.mp4")
    add_all(sink, [VideoRecord("c.mp4", "ok", model="m", views=dict(VIEWS))])
    lines = out.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["path"] for line in lines] == ["a.mp4", "b.mp4", "c.mp4"]


# --------------------------------------------------------------------------- journal repair


def write_lines(path: Path, records: list[VideoRecord], tail: bytes = b"") -> None:
    body = "".join(json.dumps(r.to_dict()) + "\n" for r in records).encode("utf-8")
    path.write_bytes(body + tail)


def test_resume_drops_a_truncated_last_line(tmp_path):
    out = tmp_path / "out.jsonl"
    write_lines(out, [ok_record("a.mp4")], tail=b'{"path": "b.mp4", "sta')
    sink = open_sink(out, None, resume=True, model="swin-t-k400", views=VIEWS)
    assert out.read_bytes().endswith(b"}\n")  # repaired on open
    assert sink.done("a.mp4") and not sink.done("b.mp4")
    add_all(sink, [ok_record("b.mp4")])
    assert [json.loads(line)["path"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a.mp4", "b.mp4"]


def test_resume_keeps_a_complete_last_line_missing_its_newline(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps(ok_record("a.mp4").to_dict()), encoding="utf-8")
    add_all(open_sink(out, None, resume=True, model="swin-t-k400", views=VIEWS), [ok_record("b.mp4")])
    assert [json.loads(line)["path"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a.mp4", "b.mp4"]


def test_reading_a_killed_jsonl_does_not_modify_it(tmp_path):
    out = tmp_path / "out.jsonl"
    write_lines(out, [ok_record("a.mp4")], tail=b'{"pa')
    before = out.read_bytes()
    assert [r.path for r in read_records(out)] == ["a.mp4"]
    assert out.read_bytes() == before


def test_resume_refuses_a_file_that_is_not_a_journal(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("hello\nworld\n", encoding="utf-8")
    with pytest.raises(VswinError, match="line 1"):
        open_sink(out, None, resume=True)
    out.write_text('{"not": "a record"}\n', encoding="utf-8")
    with pytest.raises(VswinError, match="not a vswin record"):
        open_sink(out, None, resume=True)


@pytest.mark.parametrize("text", ["one line of notes\n", None])
def test_resume_refuses_a_whole_last_line_that_is_not_json_and_keeps_the_file(tmp_path, text):
    # A killed write leaves a line without its newline; a whole line is someone's content. Was:
    # a one-line file (notes, or records compacted into one JSON array) silently emptied.
    out = tmp_path / "out.jsonl"
    out.write_text(text or json.dumps([ok_record("a.mp4").to_dict(), ok_record("b.mp4").to_dict()]) + "\n", encoding="utf-8")
    before = out.read_bytes()
    with pytest.raises(VswinError, match="line 1 is not a JSON object"):
        open_sink(out, None, resume=True)
    assert out.read_bytes() == before


# --------------------------------------------------------------------------- resume identity


def test_resume_identity_is_path_model_and_views(tmp_path):
    out = tmp_path / "out.jsonl"
    write_lines(
        out,
        [
            ok_record("same.mp4"),
            ok_record("other-model.mp4", model="swin-b-k400"),
            ok_record("other-views.mp4", views={**VIEWS, "crops": 1}),
            error_record("failed.mp4"),
            ok_record("later-failed.mp4"),
            error_record("later-failed.mp4"),
        ],
    )
    sink = open_sink(out, None, resume=True, model="swin-t-k400", views=VIEWS)
    assert sink.done("same.mp4")
    assert sink.done("./same.mp4")  # the same path spelled differently
    assert not sink.done("other-model.mp4")
    assert not sink.done("other-views.mp4")
    assert not sink.done("failed.mp4")  # errors are retried
    assert not sink.done("later-failed.mp4")  # the newest record counts
    assert not sink.done("never-seen.mp4")
    sink.close()


def test_views_compare_as_json_values(tmp_path):
    out = tmp_path / "out.jsonl"
    views = {"clips": 4, "stride": 2.0, "size": (224, 224)}
    add_all(open_sink(out, None, model="m", views=views), [ok_record("a.mp4", model="m", views=views)])
    assert open_sink(out, None, resume=True, model="m", views=views).done("a.mp4")


def test_resume_retries_errors_and_keeps_each_video_once(tmp_path):
    out = tmp_path / "out.jsonl"
    add_all(open_sink(out, None, model="swin-t-k400", views=VIEWS), [ok_record("a.mp4"), error_record("b.mp4")])
    sink = open_sink(out, None, resume=True, model="swin-t-k400", views=VIEWS)
    assert sink.done("a.mp4") and not sink.done("b.mp4")
    add_all(sink, [ok_record("b.mp4"), ok_record("c.mp4")])
    parsed = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(d["path"], d["status"]) for d in parsed] == [("a.mp4", "ok"), ("b.mp4", "ok"), ("c.mp4", "ok")]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_resume_knows_a_video_however_its_path_is_spelled(tmp_path, monkeypatch, suffix):
    # Was: a run on "videos/" resumed as "/abs/videos/" redid every video and listed each twice.
    monkeypatch.chdir(tmp_path)
    out = tmp_path / f"out{suffix}"
    add_all(open_sink(out, None, model="swin-t-k400", views=VIEWS), [ok_record("videos/a.mp4"), error_record("videos/b.mp4")])
    sink = open_sink(out, None, resume=True, model="swin-t-k400", views=VIEWS)
    assert sink.done(tmp_path / "videos" / "a.mp4") and sink.done("./videos/a.mp4")
    assert not sink.done(tmp_path / "videos" / "b.mp4")
    add_all(sink, [ok_record(str(tmp_path / "videos" / "b.mp4"))])
    # One record per video: the newest, in the place of the first.
    assert [(r.path, r.status) for r in read_records(out)] == [("videos/a.mp4", "ok"), (str(tmp_path / "videos" / "b.mp4"), "ok")]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_resume_with_another_top_k_redoes_the_records(tmp_path, suffix):
    # Was: records of a --top-k 3 run counted as done for --top-k 2 (or 5), so one output mixed
    # records of 3 labels with records of 2, and the CSV had empty label columns.
    out = tmp_path / f"out{suffix}"
    add_all(open_sink(out, None, top_k=3, model="swin-t-k400", views=VIEWS), [ok_record("a.mp4")])
    assert open_sink(out, None, resume=True, top_k=3, model="swin-t-k400", views=VIEWS).done("a.mp4")
    for other in (2, 5):
        assert not open_sink(out, None, resume=True, top_k=other, model="swin-t-k400", views=VIEWS).done("a.mp4")
    # Callers that do not say how many labels (the Python API) keep the old rule.
    assert open_sink(out, None, resume=True, model="swin-t-k400", views=VIEWS).done("a.mp4")


def test_a_hand_edited_journal_line_is_named_with_its_field(tmp_path):
    out = tmp_path / "out.jsonl"
    good = json.dumps(ok_record("a.mp4").to_dict())
    cases = {
        "{}": "line 3 is not a vswin record (no 'status' field)",
        '{"path": "c.mp4", "status": "OK"}': "line 3 is not a vswin record (unknown status 'OK')",
        "[1, 2]": "line 3 is not a JSON object",
    }
    for line, reason in cases.items():
        out.write_text(f"{good}\n\n{line}\n{good}\n", encoding="utf-8")  # line 2 is blank
        with pytest.raises(VswinError) as caught:
            open_sink(out, None, resume=True)
        message = str(caught.value)
        assert message.startswith(f"{out} {reason}") and "fix or delete that line" in message
        assert caught.value.exit_code == 2


def test_a_hand_edited_json_output_names_the_record(tmp_path):
    out = tmp_path / "out.json"
    out.write_text(json.dumps([ok_record("a.mp4").to_dict(), {"path": "b.mp4"}]), encoding="utf-8")
    with pytest.raises(VswinError, match=r"out.json record 2 is not a vswin record \(no 'status' field\)"):
        open_sink(out, None, resume=True)


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_interrupted_snapshot_output_is_valid_and_resumable(tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    with pytest.raises(KeyboardInterrupt):
        with open_sink(out, None, model="swin-t-k400", views=VIEWS) as sink:
            sink.add(ok_record("a.mp4"))
            sink.add(error_record("b.mp4"))
            raise KeyboardInterrupt
    assert [(r.path, r.status) for r in read_records(out)] == [("a.mp4", "ok"), ("b.mp4", "error")]
    assert journal_path(out).exists()  # kept: it tells --resume which model made them

    sink = open_sink(out, None, resume=True, model="swin-t-k400", views=VIEWS)
    assert sink.done("a.mp4") and not sink.done("b.mp4")
    add_all(sink, [ok_record("b.mp4"), ok_record("c.mp4")])
    assert [(r.path, r.status) for r in read_records(out)] == [("a.mp4", "ok"), ("b.mp4", "ok"), ("c.mp4", "ok")]
    assert not journal_path(out).exists()


def test_finished_json_output_is_resumed_from_the_file_itself(tmp_path):
    out = tmp_path / "out.json"
    add_all(open_sink(out, None, model="swin-t-k400", views=VIEWS), [ok_record("a.mp4")])
    assert not journal_path(out).exists()
    sink = open_sink(out, None, resume=True, model="swin-t-k400", views=VIEWS)
    assert sink.done("a.mp4")
    add_all(sink, [ok_record("b.mp4")])
    assert [r.path for r in read_records(out)] == ["a.mp4", "b.mp4"]


def test_interrupt_before_any_video_touches_nothing(tmp_path):
    for name in ("out.json", "out.jsonl"):
        out = tmp_path / name
        out.write_text("previous results\n", encoding="utf-8")
        with pytest.raises(KeyboardInterrupt):
            with open_sink(out, None, model="m", views=VIEWS):
                raise KeyboardInterrupt
        assert out.read_text(encoding="utf-8") == "previous results\n"


def test_without_resume_a_stale_journal_is_ignored(tmp_path):
    out = tmp_path / "out.json"
    journal_path(out).write_text(json.dumps(ok_record("old.mp4").to_dict()) + "\n", encoding="utf-8")
    sink = open_sink(out, None, model="swin-t-k400", views=VIEWS)
    assert not sink.done("old.mp4")
    add_all(sink, [ok_record("new.mp4")])
    assert [r.path for r in read_records(out)] == ["new.mp4"]
    assert not journal_path(out).exists()


def test_output_under_a_file_is_a_usage_error_naming_that_file(tmp_path):
    # Was "cannot write .../file/out.jsonl: file exists" (exit 1) once the first video was done.
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    for output in (blocker / "out.jsonl", blocker / "deeper" / "out.csv"):
        with pytest.raises(VswinError) as caught:
            open_sink(output, None)  # its folder cannot exist
        assert str(caught.value) == f"-o {output} cannot be made: {blocker} is a file, not a folder; choose another output"
        assert caught.value.exit_code == 2
    assert blocker.read_text(encoding="utf-8") == "x"


@pytest.mark.parametrize(
    ("code", "reason", "advice"),
    [
        (errno.ENOSPC, "no space left on device", "free some space"),
        (errno.EACCES, "permission denied", "a folder you can write to"),
        (errno.EIO, "input/output error", "check the path"),
    ],
)
def test_io_errors_say_the_reason_and_advice_that_fits(tmp_path, monkeypatch, code, reason, advice):
    out = tmp_path / "out.csv"
    sink = open_sink(out, None, model="m", views=VIEWS)
    sink.add(ok_record("a.mp4", model="m"))

    def fail(*args):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(VswinError) as caught:
        sink.close()
    message = str(caught.value)
    assert message.startswith(f"cannot write {out}: {reason}; ") and advice in message
    assert caught.value.exit_code == 1  # the run failed; the options were fine


def test_disk_full_mid_line_keeps_whole_lines_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    sink = open_sink(out, None, model="m", views=VIEWS)
    sink.add(ok_record("a.mp4", model="m"))
    real_write = os.write

    def half_then_full(fd, data):
        if os.path.samestat(os.fstat(fd), os.stat(out)):
            real_write(fd, bytes(data[: len(data) // 2]))  # what fitted on the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(VswinError, match="no space left on device") as caught:
        with sink:  # closing after the failure must not raise a second error
            sink.add(ok_record("b.mp4", model="m"))
    assert caught.value.exit_code == 1
    monkeypatch.undo()
    assert [json.loads(line)["path"] for line in out.read_text(encoding="utf-8").splitlines()] == ["a.mp4"]
    assert out.read_bytes().endswith(b"}\n")
    sink = open_sink(out, None, resume=True, model="m", views=VIEWS)
    assert sink.done("a.mp4") and not sink.done("b.mp4")
    add_all(sink, [ok_record("b.mp4", model="m")])
    assert [r.path for r in read_records(out)] == ["a.mp4", "b.mp4"]


def test_without_resume_an_old_output_is_replaced(tmp_path):
    out = tmp_path / "out.jsonl"
    write_lines(out, [ok_record("old.mp4")])
    add_all(open_sink(out, None, model="swin-t-k400", views=VIEWS), [ok_record("new.mp4")])
    assert [r.path for r in read_records(out)] == ["new.mp4"]


# --------------------------------------------------------------------------- table


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def table_text(stream: io.StringIO, records, views=VIEWS, fmt: str | None = "table") -> str:
    add_all(open_sink(None, fmt, top_k=3, views=views, stream=stream), records)
    return stream.getvalue()


@pytest.fixture
def color_terminal_env(monkeypatch):
    """An environment where Rich would colour a terminal (CI may set TERM=dumb or FORCE_COLOR)."""
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    return monkeypatch


def test_table_is_plain_text_when_not_a_terminal(color_terminal_env):
    text = table_text(io.StringIO(), [ok_record("[bold]odd[/bold] name.mp4"), error_record("b.mp4")])
    assert "\x1b[" not in text
    assert "[bold]odd[/bold] name.mp4" in text  # no markup interpretation of file names
    assert "0.7123" in text and LABELS[2] in text
    assert "b.mp4  error: not a video: no video stream" in text


def test_table_honours_no_color_on_a_terminal(color_terminal_env):
    monkeypatch = color_terminal_env
    assert "\x1b[" in table_text(FakeTerminal(), [error_record("b.mp4")])  # styled on a terminal
    monkeypatch.setenv("NO_COLOR", "1")
    text = table_text(FakeTerminal(), [error_record("b.mp4")])
    assert "\x1b[" not in text and "b.mp4  error: not a video" in text


def test_table_shows_control_characters_as_escapes(color_terminal_env):
    # Was: a newline in a file name split the row; an escape sequence in a name or label recoloured
    # the user's terminal.
    color_terminal_env.setenv("NO_COLOR", "1")
    record = ok_record("new\nline \x1b[31mred\x1b[0m.mp4")
    record.predictions[0] = Prediction(1, 2, "tab\there", 0.9)
    failed = VideoRecord.failure("b\rc.mp4", "not a video")
    text = table_text(FakeTerminal(), [record, failed])
    lines = text.splitlines()
    assert lines[0] == "new\\nline \\x1b[31mred\\x1b[0m.mp4"
    assert any(line.split()[-1] == "tab\\there" for line in lines)
    assert "b\\rc.mp4  error: not a video" in lines
    assert "\x1b" not in text and "\r" not in text and "\t" not in text
    assert "pêche à la mouche" in text  # non-ASCII is shown as it is


def test_stdout_on_a_terminal_defaults_to_the_table(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    assert table_text(FakeTerminal(), [ok_record("a.mp4")], fmt=None).startswith("a.mp4\n")
    assert table_text(io.StringIO(), [ok_record("a.mp4")], fmt=None).startswith('{"path": "a.mp4"')


def top(index: int, label: str, score: float) -> dict:
    return {"rank": 1, "index": index, "label": label, "score": score}


def test_stride_table_shows_a_timeline(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    record = ok_record("a.mp4")
    record = VideoRecord.from_dict(
        {
            **record.to_dict(),
            "clips": [
                {"start": 0.0, "end": 2.5, "frames": [0], "predictions": [top(0, "abseiling", 0.6)]},
                {"start": 62.0, "end": 64.5, "frames": [9], "predictions": [top(1, "arm wrestling", 0.75)]},
            ],
        }
    )
    lines = table_text(io.StringIO(), [record], views={**VIEWS, "stride": 2.0}).splitlines()
    rows = [line.split() for line in lines if line.strip().startswith(("0:", "1:"))]
    assert rows == [["0:00.00", "0:02.50", "0.6000", "abseiling"], ["1:02.00", "1:04.50", "0.7500", "arm", "wrestling"]]
    # Without --stride the per-clip rows are not shown.
    assert "1:02.00" not in table_text(io.StringIO(), [record])


# --------------------------------------------------------------------------- features


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_npy_loads_without_pickle(tmp_path, dtype):
    array = (np.arange(12, dtype=np.float64).reshape(3, 4) / 7).astype(dtype)
    path = tmp_path / "deep" / "x.mp4.npy"
    write_npy_atomic(path, array)
    loaded = np.load(path, allow_pickle=False)
    assert loaded.dtype == dtype and loaded.shape == (3, 4)
    np.testing.assert_array_equal(loaded, array)
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.mp4.npy"]  # no temp left
    with pytest.raises(ValueError):
        write_npy_atomic(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))


def test_json_and_text_atomic_writers(tmp_path):
    write_json_atomic(tmp_path / "s.json", {"model": "m", "clips": [[0.5, 1.5]], "name": "été"})
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8")) == {
        "model": "m",
        "clips": [[0.5, 1.5]],
        "name": "été",
    }
    write_text_atomic(tmp_path / "t.txt", "a\nb\n")
    assert (tmp_path / "t.txt").read_bytes() == b"a\nb\n"


def test_feature_paths_mirror_the_input_tree(tmp_path):
    out = Path("feats")
    assert feature_path(out, Path("videos/a/x.mp4"), Path("videos")) == Path("feats/a/x.mp4.npy")
    assert feature_path(out, Path("/data/clip one.mov"), Path("/data")) == Path("feats/clip one.mov.npy")
    assert feature_path(out, Path("vidéos/日本/été.mp4"), Path("vidéos")) == Path("feats/日本/été.mp4.npy")
    # x.mp4 and x.avi stay apart because the extension is kept.
    assert feature_path(out, Path("v/x.avi"), Path("v")) != feature_path(out, Path("v/x.mp4"), Path("v"))
    # Never outside DIR.
    assert feature_path(out, Path("elsewhere/x.mp4"), Path("videos")) == Path("feats/x.mp4.npy")
    assert sidecar_path(Path("feats/a/x.mp4.npy")) == Path("feats/a/x.mp4.json")


def test_colliding_feature_paths_get_a_hash_of_the_input_path():
    import hashlib

    inputs = [(Path("/d1/a/x.mp4"), Path("/d1")), (Path("/d2/a/x.mp4"), Path("/d2")), (Path("/d1/b.mp4"), Path("/d1"))]
    planned = plan_feature_paths(inputs, Path("/out"))
    h1 = hashlib.sha256(b"/d1/a/x.mp4").hexdigest()[:10]
    h2 = hashlib.sha256(b"/d2/a/x.mp4").hexdigest()[:10]
    assert planned == [Path(f"/out/a/x.mp4.{h1}.npy"), Path(f"/out/a/x.mp4.{h2}.npy"), Path("/out/b.mp4.npy")]
    assert plan_feature_paths(inputs[::-1], Path("/out")) == planned[::-1]  # order does not matter
    # Names equal up to case collide on macOS / Windows file systems.
    upper = plan_feature_paths([(Path("/v/X.mp4"), Path("/v")), (Path("/v/x.mp4"), Path("/v"))], Path("/o"))
    assert len({str(p).casefold() for p in upper}) == 2


def feature_entry(path: str, out_dir: Path, model: str = "m", status: str = "ok") -> FeatureEntry:
    npy = out_dir / f"{path}.npy"
    if status == "ok":
        write_npy_atomic(npy, np.zeros(4, dtype=np.float32))
    return FeatureEntry(
        path=path,
        status=status,  # type: ignore[arg-type]
        error=None if status == "ok" else "not a video",
        model=model,
        views=dict(VIEWS),
        output=f"{path}.npy" if status == "ok" else None,
        sidecar=f"{path}.json" if status == "ok" else None,
        shape=[4] if status == "ok" else None,
        dtype="float32" if status == "ok" else None,
    )


def test_feature_index_done_needs_ok_line_same_model_and_the_npy(tmp_path):
    out_dir = tmp_path / "feats"
    with open_feature_index(out_dir, model="m", views=VIEWS) as index:
        runs = [("a.mp4", "m", "ok"), ("b.mp4", "m", "ok"), ("c.mp4", "other", "ok"), ("d.mp4", "m", "error")]
        for path, model, status in runs:
            index.add(feature_entry(path, out_dir, model, status))
    lines = [json.loads(line) for line in (out_dir / "index.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(d["path"], d["status"], d["output"]) for d in lines] == [
        ("a.mp4", "ok", "a.mp4.npy"),
        ("b.mp4", "ok", "b.mp4.npy"),
        ("c.mp4", "ok", "c.mp4.npy"),
        ("d.mp4", "error", None),
    ]
    assert list(lines[0])[:6] == ["path", "status", "error", "warnings", "model", "views"]
    (out_dir / "b.mp4.npy").unlink()
    index = open_feature_index(out_dir, resume=True, model="m", views=VIEWS)
    assert index.done("a.mp4")
    assert not index.done("b.mp4")  # its .npy is gone
    assert not index.done("c.mp4")  # another model
    assert not index.done("d.mp4")  # failed: retried
    assert not open_feature_index(out_dir, resume=True, model="m", views={**VIEWS, "clips": 1}).done("a.mp4")
    index.close()


def test_feature_index_repairs_and_compacts(tmp_path):
    out_dir = tmp_path / "feats"
    out_dir.mkdir()
    first = feature_entry("a.mp4", out_dir, status="error")
    (out_dir / "index.jsonl").write_bytes((json.dumps(first.to_dict()) + "\n").encode() + b'{"path": "b.mp')
    with open_feature_index(out_dir, resume=True, model="m", views=VIEWS) as index:
        assert not index.done("a.mp4")
        index.add(feature_entry("a.mp4", out_dir))
        assert index.relative(out_dir / "sub" / "x.npy") == "sub/x.npy"
    lines = [json.loads(line) for line in (out_dir / "index.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(d["path"], d["status"]) for d in lines] == [("a.mp4", "ok")]


def test_feature_output_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "feats").write_text("x", encoding="utf-8")
    with pytest.raises(VswinError, match="folder"):
        open_feature_index(tmp_path / "feats")


# --------------------------------------------------------------------------- links, pipes, locks


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv"])
def test_symlinked_output_writes_its_target_and_journals_beside_it(tmp_path, suffix):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / f"target{suffix}"
    target.write_text("old\n", encoding="utf-8")
    link = tmp_path / f"link{suffix}"
    link.symlink_to(Path("real") / target.name)
    with pytest.raises(KeyboardInterrupt):
        with open_sink(link, None, model="m", views=VIEWS) as sink:
            sink.add(ok_record("a.mp4", model="m"))
            raise KeyboardInterrupt
    assert link.is_symlink() and os.readlink(link) == str(Path("real") / target.name)
    assert [r.path for r in read_records(target)] == ["a.mp4"]
    if suffix != ".jsonl":
        assert journal_path(target).exists() and not journal_path(link).exists()
    sink = open_sink(link, None, resume=True, model="m", views=VIEWS)
    assert sink.done("a.mp4")
    add_all(sink, [ok_record("b.mp4", model="m"), ok_record("a.mp4", model="m")])  # a retried: compacted
    assert link.is_symlink() and [r.path for r in read_records(target)] == ["a.mp4", "b.mp4"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_pipe_output_is_refused_and_left_alone(tmp_path):
    pipe = tmp_path / "out.csv"
    os.mkfifo(pipe)
    with pytest.raises(VswinError, match=r"out.csv is a pipe, not a file; .*--format json\|jsonl\|csv without -o") as caught:
        open_sink(pipe, None)
    assert caught.value.exit_code == 2
    with pytest.raises(VswinError, match="is a pipe"):
        write_text_atomic(pipe, "results")  # the atomic writer never renames over one either
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_second_claim_on_the_same_output_is_refused(tmp_path):
    out = tmp_path / "out.json"
    (tmp_path / "link.json").symlink_to(out)
    with claim_output(out, None) as target:
        assert target == out
        for spelling in (out, tmp_path / "link.json", tmp_path / "." / "out.json"):
            with pytest.raises(VswinError, match=r"another vswin run is writing .*; wait for it") as caught:
                with claim_output(spelling, None):
                    pass
            assert caught.value.exit_code == 2
        with claim_output(tmp_path / "other.json", None):
            pass  # other outputs are free
    with claim_output(out, None):
        pass  # released with the first claim
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json"]  # no lock file left


@pytest.mark.parametrize("first_claims_csv", [True, False])
def test_an_output_that_is_another_runs_journal_is_refused(tmp_path, first_claims_csv):
    # Was: `-o x.csv` and `-o x.csv.partial.jsonl` took different locks and wrote one file, each
    # over the other's lines; the .jsonl run said "30 ok" with none of its records left.
    claims = [tmp_path / "x.csv", tmp_path / "x.csv.partial.jsonl"]
    first, second = claims if first_claims_csv else claims[::-1]
    with claim_output(first, None):
        with pytest.raises(VswinError, match="another vswin run is writing"):
            with claim_output(second, None):
                pass
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_run_does_not_keep_its_output_locked(tmp_path):
    process = run_until_ready(
        """
        import time
        from pathlib import Path
        from vswin_cli.output_claims import claim_output
        with claim_output(Path("out.csv"), None):
            print("READY", flush=True)
            time.sleep(60)
        """,
        tmp_path,
    )
    with pytest.raises(VswinError, match="another vswin run"):
        with claim_output(tmp_path / "out.csv", None):
            pass
    kill(process)
    with claim_output(tmp_path / "out.csv", None):
        pass


def test_claim_refuses_an_output_that_is_an_input(tmp_path):
    video = tmp_path / "a.mp4"
    video.write_bytes(b"video bytes")
    (tmp_path / "link.mp4").symlink_to(video)
    named_like_a_journal = journal_path(tmp_path / "b.csv")
    named_like_a_journal.write_bytes(b"a video named like a journal")
    cases = [
        (video, "csv", tmp_path / "." / "a.mp4"),  # the same file, spelled otherwise
        (tmp_path / "link.mp4", "json", video),  # through a link
        (tmp_path / "b.csv", None, named_like_a_journal),  # the journal would land on the input
    ]
    for output, fmt, video_input in cases:
        with pytest.raises(VswinError, match=r"would overwrite the input .*; choose another output") as caught:
            with claim_output(output, fmt, [tmp_path / "other.mp4", video_input]):
                pass
        assert caught.value.exit_code == 2
    assert video.read_bytes() == b"video bytes"
    assert named_like_a_journal.read_bytes() == b"a video named like a journal"


@pytest.mark.parametrize("name", ["out.jsonl", "out.json", "out.csv"])
@pytest.mark.parametrize("how", ["folder removed", "file replaced by a folder"])
def test_an_output_removed_during_the_run_fails_it_instead_of_claiming_the_results(tmp_path, name, how):
    # Was: lines kept going to the deleted file; the run ended "N ok; results in out.jsonl" with
    # no file, or wrote an empty out.json / a header-only out.csv.
    import shutil

    folder = tmp_path / "od"
    out = folder / name
    sink = open_sink(out, None, model="swin-t-k400", views=VIEWS)
    sink.add(ok_record("a.mp4"))
    journal = out if name.endswith(".jsonl") else journal_path(out)
    if how == "folder removed":
        shutil.rmtree(folder)
    else:
        journal.unlink()
        journal.mkdir()
    with pytest.raises(VswinError, match=r"was removed or replaced during the run, so the results written to it are gone") as caught:
        sink.add(ok_record("b.mp4"))
    assert caught.value.exit_code == 1
    sink.close(complete=False)
    assert not out.is_file() and (not journal.exists() or journal.is_dir())  # nothing that claims to hold the results


def test_an_output_name_too_long_for_its_helper_files_is_a_usage_error_before_any_work(tmp_path):
    # Was: the lock fitted, the model loaded, then a traceback (the journal's name did not fit);
    # or "cannot write ...: file name too long", blaming a name the file system takes.
    name = "a" * 250 + ".json"
    (tmp_path / name).write_text("[]")  # the file system takes the name itself
    with pytest.raises(VswinError, match=r"the name is too long for the file vswin keeps beside it while it writes") as caught:
        with claim_output(tmp_path / name, None):
            pass
    assert caught.value.exit_code == 2
    with pytest.raises(VswinError, match=r"File name too long; choose another output"):
        with claim_output(tmp_path / ("b" * 260 + ".jsonl"), None):
            pass


# --- files vswin did not make stay as they were ------------------------------------------------


@pytest.mark.parametrize("content", [b"my notes\n", b'{"title": "not a record"}\n'])
def test_a_file_named_like_the_journal_that_is_not_one_is_refused_and_kept(tmp_path, content):
    # Was: emptied at the first record and removed at the end of a run without --resume.
    out = tmp_path / "out.csv"
    journal_path(out).write_bytes(content)
    with pytest.raises(VswinError, match="move it away or choose another output|not a JSON object"):
        open_sink(out, None, model="m", views=VIEWS)
    assert journal_path(out).read_bytes() == content and not out.exists()


@pytest.mark.parametrize("name", ["out.csv.lock", "out.csv.partial.jsonl.lock"])
def test_a_file_named_like_a_lock_that_is_not_empty_is_refused_and_kept(tmp_path, name):
    # vswin's lock files are empty. Was: a user's file of that name removed when the run ended.
    (tmp_path / name).write_bytes(b"do not lose me")
    with pytest.raises(VswinError) as caught:
        with claim_output(tmp_path / "out.csv", None):
            pass
    assert str(caught.value) == (f"{tmp_path / name} is in the way: vswin keeps an empty lock file of that name while it "
                                 f"writes {tmp_path / 'out.csv'}; move that file away or choose another output")
    assert (tmp_path / name).read_bytes() == b"do not lose me"
    (tmp_path / name).write_bytes(b"")  # an empty one, as a killed run leaves: taken, and removed after
    with claim_output(tmp_path / "out.csv", None):
        pass
    assert not (tmp_path / name).exists()


def test_an_index_in_the_features_folder_that_is_not_vswins_is_refused_and_kept(tmp_path):
    (tmp_path / "index.jsonl").write_bytes(b'{"id": 1, "caption": "a dog"}\n')
    for resume in (False, True):
        with pytest.raises(VswinError, match="not a vswin index entry"):
            open_feature_index(tmp_path, resume=resume)
        assert (tmp_path / "index.jsonl").read_bytes() == b'{"id": 1, "caption": "a dog"}\n'


@pytest.mark.parametrize("content", [b'{"a": 1}\n# end of file', b'{"a": 1}\n{"b": 2}'])
def test_resume_changes_nothing_in_a_file_it_refuses(tmp_path, content):
    # Was: the unfinished last line cut off (or a newline added), then the file refused.
    out = tmp_path / "data.jsonl"
    out.write_bytes(content)
    with pytest.raises(VswinError, match="is not a vswin record"):
        open_sink(out, None, resume=True)
    assert out.read_bytes() == content


@pytest.mark.parametrize("name", ["out.csv", "out.json", "out.jsonl"])
def test_a_read_only_output_is_refused_before_any_work(tmp_path, name):
    # Was: .csv and .json replaced by a rename and made writable; .jsonl refused after the first video.
    out = tmp_path / name
    out.write_bytes(b"kept")
    out.chmod(0o444)
    with pytest.raises(VswinError) as caught:
        with claim_output(out, None):
            pass
    assert str(caught.value) == f"{out} is read-only; make it writable (chmod u+w) or choose another output"
    with pytest.raises(VswinError, match="is read-only"):
        write_text_atomic(out, "new")
    assert out.read_bytes() == b"kept" and stat.S_IMODE(out.stat().st_mode) == 0o444


@pytest.mark.parametrize("name", ["out.jsonl", "out.json"])
def test_resume_on_a_file_nested_past_the_recursion_limit_is_one_line(tmp_path, name):
    # Was: a RecursionError traceback.
    out = tmp_path / name
    out.write_bytes(b"[" * 100_000 + b"]" * 100_000 + b"\n")
    with pytest.raises(VswinError, match="not a (JSON object|vswin json results file)"):
        open_sink(out, None, resume=True)


@pytest.mark.parametrize("name", ["out.csv.lock", "out.csv.partial.jsonl"])
def test_a_named_pipe_where_vswin_keeps_a_lock_or_journal_is_refused_not_waited_on(tmp_path, name):
    # Was: opening the lock, or reading the journal, waited for a writer to the pipe forever.
    os.mkfifo(tmp_path / name)
    snippet = textwrap.dedent(f"""
        from pathlib import Path
        from vswin_cli.errors import VswinError
        from vswin_cli.output_claims import claim_output
        from vswin_cli.result_sinks import open_sink
        out = Path({str(tmp_path / "out.csv")!r})
        try:
            with claim_output(out, None):
                open_sink(out, None, model="m", views={{}})
        except VswinError as error:
            print(error)
    """)
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.stdout.startswith(f"{tmp_path / name} is in the way:"), (done.stdout, done.stderr)
    assert stat.S_ISFIFO(os.stat(tmp_path / name).st_mode)  # left as it was


def test_a_file_system_without_locks_is_said_not_silently_unguarded(tmp_path, monkeypatch, capsys):
    # Was: flock failing (ENOLCK on some network mounts) left two runs free to write one journal, unsaid.
    from vswin_cli import output_claims

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(output_claims.fcntl, "flock", no_locks)
    with claim_output(tmp_path / "out.csv", None):
        pass
    assert capsys.readouterr().err == (f"warning: the file system of {tmp_path} cannot lock files, so nothing stops another "
                                       f"vswin run from writing {tmp_path / 'out.csv'} at the same time\n")


def test_atomic_files_take_the_umask_of_the_moment_they_are_made(tmp_path):
    # Was: the umask read once at import; a program that tightened it later (077) still got 0644 files.
    # And a writer that puts its own 0600 file in the temporary's place (safetensors' save_file, under
    # vswin convert) still gives a file of the usual permissions.
    from vswin_cli.checkpoints import save_native
    from vswin_cli.model import SwinConfig, VideoSwin

    model = VideoSwin(SwinConfig(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=(2, 2, 2), num_classes=2))
    previous = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "open.json", {"a": 1})
        save_native(model, tmp_path / "open.safetensors")
        os.umask(0o077)
        write_json_atomic(tmp_path / "private.json", {"a": 1})
        write_npy_atomic(tmp_path / "private.npy", np.zeros(2))
        save_native(model, tmp_path / "private.safetensors")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in tmp_path.iterdir()}  # and no temporary left
    assert modes == {"open.json": 0o644, "open.safetensors": 0o644,
                     "private.json": 0o600, "private.npy": 0o600, "private.safetensors": 0o600}
