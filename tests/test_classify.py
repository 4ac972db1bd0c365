"""`vswin classify` end to end: folders of good and bad files, exit codes, outputs, resume, kills, memory."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import media
from conftest import SUBPROCESS_ENV, TINY_LABELS

FAST = ("--clip-len", "8", "--clips", "2", "--crops", "1")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Good videos, broken files, a non-video file, sub-folders, odd names and a symlink."""
    root = tmp_path_factory.mktemp("videos")
    media.encode_cv2(root / "a.avi", frames=40, size=(64, 48))
    media.encode_cv2(root / "b clip é.avi", frames=12, size=(48, 64))  # short: indices wrap
    (root / "sub").mkdir()
    media.encode_cv2(root / "sub" / "c.avi", frames=30, size=(64, 48))
    (root / "broken.mp4").write_text("not a video at all\n")
    (root / "empty.avi").write_bytes(b"")
    data = (root / "a.avi").read_bytes()
    (root / "truncated.avi").write_bytes(data[:200])
    (root / "readme.txt").write_text("notes")
    os.symlink(root / "sub" / "c.avi", root / "link to c.avi")
    return root


def records_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_folder_every_file_accounted_for(folder, tiny_checkpoint, invoke):
    code, out, err = invoke("classify", folder, "-m", tiny_checkpoint, *FAST, "--format", "jsonl")
    assert code == 1  # some files failed
    records = {Path(r["path"]).name: r for r in records_of(out)}
    assert set(records) == {"a.avi", "b clip é.avi", "broken.mp4", "empty.avi", "truncated.avi", "link to c.avi"}
    for name in ("a.avi", "b clip é.avi", "link to c.avi"):
        assert records[name]["status"] == "ok", records[name]
        assert [p["rank"] for p in records[name]["predictions"]] == [1, 2, 3, 4, 5]
        assert all(p["label"] == TINY_LABELS[p["index"]] for p in records[name]["predictions"])
        assert len(records[name]["clips"]) == 2
    for name in ("broken.mp4", "empty.avi", "truncated.avi"):
        assert records[name]["status"] == "error" and records[name]["error"], records[name]
        assert "\n" not in records[name]["error"]
    assert any("frames repeat" in w for w in records["b clip é.avi"]["warnings"])
    assert "sub-folder" in err and "-r" in err  # sub/ is reported, not silently dropped
    assert "Traceback" not in err


def test_recursive_and_all_good_exit_0(folder, tiny_checkpoint, invoke):
    code, out, _ = invoke("classify", folder / "sub", folder / "a.avi", "-r", "-m", tiny_checkpoint, *FAST, "--format", "json")
    assert code == 0
    records = json.loads(out)  # pipe-safe: stdout holds only the JSON document
    assert [Path(r["path"]).name for r in records] == ["c.avi", "a.avi"]


@pytest.mark.parametrize(
    "args,message",
    [
        (("--crops", "2"), "--crops must be 1 or 3"),
        (("--precision", "fp8"), "--precision"),
        (("--device", "tpu"), "--device"),
        (("--batch-size", "many"), "--batch-size"),
        (("-o", "out.xml"), "out.xml"),
        (("--resume",), "--resume needs -o"),
    ],
)
def test_bad_options_exit_2_with_one_line(folder, tiny_checkpoint, invoke, args, message):
    code, out, err = invoke("classify", folder / "a.avi", "-m", tiny_checkpoint, *args)
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert out == ""


def test_missing_path_and_unknown_model_exit_2(folder, tiny_checkpoint, invoke):
    code, _, err = invoke("classify", folder / "nope.mp4", "-m", tiny_checkpoint)
    assert code == 2 and err.strip().splitlines() == [f"error: no such file or folder: {folder / 'nope.mp4'}"]
    code, _, err = invoke("classify", folder / "a.avi", "-m", "swin-q-k400")
    assert code == 2 and "swin-q-k400" in err and len(err.strip().splitlines()) == 1


def test_unknown_option_value_exit_2(folder, tiny_checkpoint, vswin):
    result = vswin("classify", folder / "a.avi", "-m", tiny_checkpoint, "--engine", "spark")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_no_network_and_empty_cache_says_what_to_do(folder, tmp_path, vswin):
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    result = vswin("classify", folder / "a.avi", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "swin-t-k400" in lines[0] and "vswin download swin-t-k400" in lines[0] and "-m PATH" in lines[0]
    assert str(tmp_path / "hf") in lines[0]


def test_csv_output_quotes_labels_and_table_is_plain(folder, tiny_checkpoint, invoke, tmp_path, monkeypatch):
    out_csv = tmp_path / "labels.csv"
    code, out, _ = invoke("classify", folder / "a.avi", folder / "broken.mp4", "-m", tiny_checkpoint, *FAST, "-o", out_csv, "--top-k", "2")
    assert code == 1 and out == ""
    rows = list(csv.reader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    assert rows[0] == ["path", "status", "label_1", "score_1", "label_2", "score_2", "error"]
    assert rows[1][1] == "ok" and rows[1][2] in TINY_LABELS  # commas survived the quoting
    assert rows[2][1] == "error" and rows[2][-1]
    monkeypatch.setenv("NO_COLOR", "1")
    code, out, _ = invoke("classify", folder / "a.avi", "-m", tiny_checkpoint, *FAST, "--format", "table")
    assert code == 0 and "\x1b[" not in out and "a.avi" in out and TINY_LABELS[0].split(",")[0] in out


def test_stride_gives_a_timeline(folder, tiny_checkpoint, invoke):
    code, out, _ = invoke("classify", folder / "a.avi", "-m", tiny_checkpoint, "--stride", "0.5", "--clip-len", "4", "--crops", "1", "--format", "json")
    assert code == 0
    record = json.loads(out)[0]
    starts = [c["start"] for c in record["clips"]]
    assert len(starts) >= 3 and starts == sorted(starts) and starts[0] == 0.0
    assert record["views"]["stride"] == 0.5
    assert all(c["end"] > c["start"] and c["predictions"] for c in record["clips"])


def test_clip_times_are_milliseconds(tmp_path, tiny_checkpoint, invoke):
    # At 30 fps frame times are thirds of 0.1 s: records said 0.4666666666666667, where the
    # video's own duration is rounded to the millisecond.
    media.encode_cv2(tmp_path / "v.avi", frames=40, size=(64, 48), fps=30)
    code, out, err = invoke("classify", tmp_path / "v.avi", "-m", tiny_checkpoint, "--clips", "3", "--crops", "1", "--clip-len", "4", "--format", "json")
    assert code == 0, err
    clips = json.loads(out)[0]["clips"]
    times = [t for c in clips for t in (c["start"], c["end"])]
    assert [t for t in times if round(t, 3) != t] == []
    assert [(c["start"], c["end"]) for c in clips] == [
        (round(c["frames"][0] / 30, 3), round((c["frames"][-1] + 1) / 30, 3)) for c in clips
    ]


@pytest.mark.parametrize("command", ["classify", "extract-features"])
@pytest.mark.parametrize(("extra", "message"), [
    (["--stride", "1", "--clips", "2"], "--clips and --stride exclude each other"),
    (["--stride", "inf"], "--stride must be a positive number of seconds"),
    (["--ray-address", "ray://head:10001"], "--ray-address is for --engine ray"),
])
def test_options_that_cannot_hold_together_are_refused(folder, tiny_checkpoint, invoke, tmp_path, command, extra, message):
    # Once silently ignored (--clips with --stride, --ray-address without ray) or turned into
    # invalid JSON ("stride": Infinity).
    code, out, err = invoke(command, folder / "a.avi", "-m", tiny_checkpoint, "-o", tmp_path / "out.json"
                            if command == "classify" else tmp_path / "feats", *extra)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_python_api_gives_the_cli_records(folder, tiny_checkpoint, invoke):
    import vswin_cli

    api = vswin_cli.classify([folder / "a.avi", folder / "broken.mp4"], model=str(tiny_checkpoint), clip_len=8, clips=2, crops=1)
    _, out, _ = invoke("classify", folder / "a.avi", folder / "broken.mp4", "-m", tiny_checkpoint, *FAST, "--format", "jsonl")
    assert api == records_of(out)


# --- interruptions and resume ------------------------------------------------------------------


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("many")
    for i in range(10):
        media.encode_cv2(root / f"v{i:02d}.avi", frames=40, size=(64, 48))
    return root


def _start(args: list[str], **extra_env: str) -> subprocess.Popen:
    env = {**os.environ, **SUBPROCESS_ENV, **extra_env}
    return subprocess.Popen([sys.executable, "-m", "vswin_cli", *map(str, args)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_lines(path: Path, count: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        if proc.poll() is not None:
            return
        time.sleep(0.02)


def test_ctrl_c_names_what_each_command_keeps():
    # Was: every command said "the videos finished so far are kept ... run with --resume", which
    # probe, download and convert have no use for.
    from vswin_cli.cli import interrupted_message

    for command in ("classify", "extract-features"):
        assert "--resume" in interrupted_message([command, "videos/", "-o", "out.jsonl"])
    assert interrupted_message(["download", "swin-t-k400"]) == (
        "interrupted; what arrived is kept and the next download of the same model continues from it"
    )
    assert interrupted_message(["convert", "a.pth", "b.safetensors"]) == "interrupted; nothing was written"
    for argv in (["probe", "videos/"], ["models"], []):
        assert interrupted_message(argv) == "interrupted"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_jsonl_batch_resumes_without_redoing(many, tiny_checkpoint, tmp_path, sig, invoke):
    videos = tmp_path / "videos"
    videos.mkdir()
    for f in many.iterdir():
        (videos / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "out.jsonl"
    scratch = tmp_path / "tmp"  # where the run keeps its crash markers
    scratch.mkdir()
    # 4 clips x 3 crops per video: slow enough to be killed mid-run.
    proc = _start(["classify", videos, "-m", tiny_checkpoint, "-o", out, "--batch-size", "1", "--clip-len", "8"], TMPDIR=str(scratch))
    _wait_for_lines(out, 2, proc)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    if sig != signal.SIGKILL:
        # SIGTERM (kill, a scheduler's stop) ends the run as Ctrl-C does. Was: at once, leaving the
        # decoding videos' crash markers, so the next run decoded them again in worker processes.
        stderr = proc.stderr.read()
        assert proc.returncode == 128 + sig and "Traceback" not in stderr
        assert stderr.splitlines()[-1].startswith("error: interrupted") and "--resume" in stderr
        assert [p for p in scratch.rglob("*") if p.is_file()] == []
    lines = out.read_bytes().split(b"\n")
    finished = [json.loads(line) for line in lines if line.strip() and line.endswith(b"}")]
    assert 2 <= len(finished) < 10, "the run was not interrupted mid-way"
    done = {Path(r["path"]).name for r in finished if r["status"] == "ok"}
    # Prove the resume does not recompute: a finished video's file now holds garbage.
    for name in done:
        (videos / name).write_text("garbage now")
    code, _, err = invoke("classify", videos, "-m", tiny_checkpoint, "-o", out, "--resume", "--clip-len", "8")
    assert code == 0, err
    final = records_of(out.read_text())
    assert sorted(Path(r["path"]).name for r in final) == sorted(f.name for f in many.iterdir())
    assert all(r["status"] == "ok" for r in final)
    kept = {Path(r["path"]).name: r for r in final}
    for record in finished:
        if record["status"] == "ok":
            assert kept[Path(record["path"]).name] == record


def test_killed_json_output_is_never_half_written(many, tiny_checkpoint, tmp_path, invoke):
    out = tmp_path / "out.json"
    journal = tmp_path / "out.json.partial.jsonl"
    proc = _start(["classify", many, "-m", tiny_checkpoint, "-o", out, "--batch-size", "1", "--clip-len", "8"])
    _wait_for_lines(journal, 2, proc)
    proc.kill()
    proc.wait(timeout=60)
    if out.exists():
        json.loads(out.read_text())  # the previous complete file, never a partial one
    code, _, err = invoke("classify", many, "-m", tiny_checkpoint, "-o", out, "--resume", "--clip-len", "8")
    assert code == 0, err
    records = json.loads(out.read_text())
    assert len(records) == 10 and all(r["status"] == "ok" for r in records)
    assert not journal.exists()


# --- memory ------------------------------------------------------------------------------------

_PEAK = """
import resource, sys
from vswin_cli.cli import main
sys.argv = ["vswin", "classify", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("PEAK", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def _peak_kib(*args: object) -> int:
    env = {**os.environ, **SUBPROCESS_ENV}
    result = subprocess.run([sys.executable, "-c", _PEAK, *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    line = [l for l in result.stderr.splitlines() if l.startswith("PEAK")][-1]
    return int(line.split()[1])


def test_peak_memory_does_not_grow_with_video_length_or_count(tmp_path, tiny_checkpoint):
    short = media.encode_cv2(tmp_path / "short.avi", frames=60, size=(64, 48))
    long = media.encode_cv2(tmp_path / "long.avi", frames=3000, size=(64, 48))
    few, lots = tmp_path / "few", tmp_path / "lots"
    few.mkdir()
    lots.mkdir()
    for i in range(12):
        target = (few if i < 2 else lots) / f"v{i}.avi"
        target.write_bytes(short.read_bytes())
        if i < 2:
            (lots / f"v{i}.avi").write_bytes(short.read_bytes())
    common = ("-m", tiny_checkpoint, "--clip-len", "8", "--clips", "2", "--crops", "1", "--format", "jsonl")
    short_peak, long_peak = _peak_kib(short, *common), _peak_kib(long, *common)
    assert long_peak < short_peak + 40_000, (short_peak, long_peak)  # KiB
    stride_peak = _peak_kib(long, *common, "--stride", "1", "--crops", "1")
    assert stride_peak < short_peak + 40_000, (short_peak, stride_peak)
    few_peak, lots_peak = _peak_kib(few, *common), _peak_kib(lots, *common)
    assert lots_peak < few_peak + 40_000, (few_peak, lots_peak)


# --- where -o may write ------------------------------------------------------------------------


def test_output_through_a_symlink_writes_its_target(folder, tiny_checkpoint, invoke, tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "target.csv"
    target.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    code, _, err = invoke("classify", folder / "a.avi", "-m", tiny_checkpoint, *FAST, "-o", link)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    rows = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8"))))
    assert rows[0][:2] == ["path", "status"] and rows[1][:2] == [str(folder / "a.avi"), "ok"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.csv", "real"]
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["target.csv"]


def _special_outputs(tmp_path: Path) -> list[Path]:
    """A named pipe and (as root, who may make one) a copy of the /dev/null device, in tmp_path."""
    pipe = tmp_path / "pipe.csv"
    os.mkfifo(pipe)
    made = [pipe]
    if os.geteuid() == 0:
        device = tmp_path / "null.csv"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        made.append(device)
    return made


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_pipe_or_device_output_is_refused_and_left_alone(folder, tiny_checkpoint, invoke, tmp_path):
    for special in _special_outputs(tmp_path):
        kind = os.stat(special).st_mode
        code, out, err = invoke("classify", folder / "a.avi", "-m", tiny_checkpoint, *FAST, "-o", special)
        assert code == 2 and out == ""
        assert err.splitlines() == [
            f"error: -o {special} is {'a pipe' if stat.S_ISFIFO(kind) else 'a device'}, not a file; "
            "for results on stdout give --format json|jsonl|csv without -o"
        ]
        assert os.lstat(special).st_mode == kind  # still the pipe or device it was
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".lock", ".jsonl"))]


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_second_run_on_the_same_output_is_refused(many, tiny_checkpoint, tmp_path, invoke, suffix):
    out = tmp_path / f"out{suffix}"
    journal = out if suffix == ".jsonl" else tmp_path / f"out{suffix}.partial.jsonl"
    first = _start(["classify", many, "-m", tiny_checkpoint, "-o", out, "--batch-size", "1", "--clip-len", "8"])
    _wait_for_lines(journal, 1, first)
    assert first.poll() is None, "the first run ended before the second started"
    code, _, err = invoke("classify", many, "-m", tiny_checkpoint, *FAST, "-o", out)
    assert code == 2
    assert err.splitlines() == [f"error: another vswin run is writing {out}; wait for it to finish or choose another output"]
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    records = json.loads(out.read_text()) if suffix == ".json" else records_of(out.read_text())
    assert len(records) == 10 and all(r["status"] == "ok" for r in records)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no journal nor lock left


def test_output_that_is_an_input_video_is_refused(folder, tiny_checkpoint, invoke, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    data = (folder / "a.avi").read_bytes()
    (videos / "a.avi").write_bytes(data)
    (videos / "b.avi").write_bytes(data)
    for output in (videos / "a.avi", tmp_path / "videos" / ".." / "videos" / "b.avi"):
        code, out, err = invoke("classify", videos, "-m", tiny_checkpoint, *FAST, "-o", output, "--format", "csv")
        assert code == 2 and out == ""
        assert len(err.splitlines()) == 1 and "would overwrite the input" in err and "choose another output" in err
    assert (videos / "a.avi").read_bytes() == data and (videos / "b.avi").read_bytes() == data


def test_csv_has_no_columns_beyond_the_model_classes(folder, tiny_checkpoint, invoke, tmp_path):
    out_csv = tmp_path / "labels.csv"
    header = ["path", "status", *[f"{c}_{i}" for i in range(1, 11) for c in ("label", "score")], "error"]
    code, _, err = invoke("classify", folder / "a.avi", "-m", tiny_checkpoint, *FAST, "-o", out_csv, "--top-k", "10000")
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    assert rows[0] == header and len(rows[1]) == len(header)  # the tiny model has 10 classes
    assert sorted(rows[1][3:22:2], key=float, reverse=True) == rows[1][3:22:2]  # all 10 scores, ranked
    code, _, err = invoke("classify", folder / "a.avi", folder / "sub" / "c.avi", "-m", tiny_checkpoint, *FAST, "-o", out_csv, "--top-k", "10000", "--resume")
    assert code == 0, err
    resumed = list(csv.reader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    assert resumed[0] == header and resumed[1] == rows[1] and len(resumed) == 3
    code, out, _ = invoke("classify", folder / "a.avi", "-m", tiny_checkpoint, *FAST, "--format", "csv", "--top-k", "10000")
    assert code == 0 and out.splitlines()[0] == ",".join(header)


def test_resume_by_another_path_spelling_or_top_k_keeps_one_consistent_record(folder, tiny_checkpoint, invoke, tmp_path, monkeypatch):
    # Was: resuming "videos/" as "/abs/videos/" redid every video and listed each twice; a resume
    # with another --top-k kept the old records, so one file mixed 2-label and 3-label records.
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.avi", "b clip é.avi"):
        (videos / name).write_bytes((folder / name).read_bytes())
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.jsonl"
    code, _, err = invoke("classify", "videos", "-m", tiny_checkpoint, *FAST, "-o", out, "--top-k", "2")
    assert code == 0, err
    first = records_of(out.read_text(encoding="utf-8"))
    code, _, err = invoke("classify", videos, "-m", tiny_checkpoint, *FAST, "-o", out, "--top-k", "2", "--resume")
    assert code == 0 and "0 ok, 0 failed, 2 already done (--resume)" in err, err
    assert records_of(out.read_text(encoding="utf-8")) == first
    code, _, err = invoke("classify", "./videos", "-m", tiny_checkpoint, *FAST, "-o", out, "--top-k", "3", "--resume")
    assert code == 0 and err.splitlines()[-1] == f"2 ok, 0 failed; results in {out}", err
    final = records_of(out.read_text(encoding="utf-8"))
    assert sorted(r["path"] for r in final) == ["videos/a.avi", "videos/b clip é.avi"]  # once each
    assert all(len(r["predictions"]) == 3 and all(len(c["predictions"]) == 3 for c in r["clips"]) for r in final)


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_resume_from_another_folder_than_the_relative_paths_is_refused(folder, tiny_checkpoint, invoke, tmp_path, monkeypatch, suffix):
    # Was: every video redone and kept twice (videos/a.avi, then ../videos/a.avi), "N ok", exit 0.
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.avi").write_bytes((folder / "a.avi").read_bytes())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / f"out.{suffix}"
    code, _, err = invoke("classify", "videos", "-m", tiny_checkpoint, *FAST, "-o", out)
    assert code == 0, err
    before = out.read_bytes()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _, err = invoke("classify", "../videos", "-m", tiny_checkpoint, *FAST, "-o", out, "--resume")
    assert code == 2 and err.splitlines() == [
        f"error: {out} names 'videos/a.avi' relative to the folder its run started in, not {tmp_path / 'elsewhere'}, "
        "so ../videos/a.avi would be done again and kept twice; run --resume from that folder"], err
    assert out.read_bytes() == before
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("classify", "videos", "-m", tiny_checkpoint, *FAST, "-o", out, "--resume")
    assert code == 0, err  # (a finished CSV holds no model to compare: its videos are redone, as documented)
    assert ("1 already done" in err) == (suffix == "jsonl"), err


def test_resume_after_the_videos_done_were_deleted_goes_on(folder, tiny_checkpoint, invoke, tmp_path, monkeypatch):
    # An inbox emptied between runs: the records of videos gone stay, the new ones are done.
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "day1.avi").write_bytes((folder / "a.avi").read_bytes())
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.jsonl"
    code, _, err = invoke("classify", "inbox", "-m", tiny_checkpoint, *FAST, "-o", out)
    assert code == 0, err
    (inbox / "day1.avi").rename(inbox / "day2.avi")
    code, _, err = invoke("classify", "inbox", "-m", tiny_checkpoint, *FAST, "-o", out, "--resume")
    assert code == 0 and err.splitlines()[-1] == f"1 ok, 0 failed; results in {out}", err
    assert [r["path"] for r in records_of(out.read_text(encoding="utf-8"))] == ["inbox/day1.avi", "inbox/day2.avi"]


def test_output_under_a_file_is_a_usage_error_before_any_work(folder, tiny_checkpoint, invoke, tmp_path):
    # Was: "cannot write notes.txt/out.csv: file exists; check the path ..." and exit 1.
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    code, out, err = invoke("classify", folder / "a.avi", "-m", tiny_checkpoint, *FAST, "-o", notes / "out.csv")
    assert code == 2 and out == ""
    assert err.splitlines() == [f"error: -o {notes / 'out.csv'} cannot be made: {notes} is a file, not a folder; choose another output"]
    assert notes.read_text() == "mine\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_full_disk_is_one_line_and_the_jsonl_resumes(many, tiny_checkpoint, invoke, tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    real_write = os.write

    def disk_full_after_two_lines(fd, data):
        # Only the output's writes: the third line is half written when the disk fills up.
        if out.exists() and os.path.samestat(os.fstat(fd), os.stat(out)) and out.read_bytes().count(b"\n") >= 2:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", disk_full_after_two_lines)
    code, _, err = invoke("classify", many, "-m", tiny_checkpoint, *FAST, "-o", out)
    monkeypatch.setattr(os, "write", real_write)
    assert code == 1
    assert err.splitlines() == [f"error: cannot write {out}: no space left on device; free some space or choose another output"]
    assert len(records_of(out.read_text())) == 2 and out.read_bytes().endswith(b"}\n")  # whole lines only
    code, _, err = invoke("classify", many, "-m", tiny_checkpoint, *FAST, "-o", out, "--resume")
    assert code == 0, err
    assert "8 ok, 0 failed, 2 already done" in err
    assert sorted(Path(r["path"]).name for r in records_of(out.read_text())) == sorted(p.name for p in many.iterdir())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_read_only_output_folder_is_one_line(folder, tiny_checkpoint, invoke, tmp_path, read_only):
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    code, _, err = invoke("classify", folder / "a.avi", "-m", tiny_checkpoint, *FAST, "-o", locked / "out.csv")
    assert code == 1
    # The file that could not be made is named: its lock comes first (was: out.csv, which misled where only the lock was refused).
    assert err.splitlines() == [f"error: cannot write {locked / 'out.csv.lock'}: permission denied; choose an output in a folder you can write to"]


@pytest.mark.skipif(not os.path.exists("/dev/fd/1"), reason="needs /dev/fd")
def test_output_to_its_own_stdout_is_refused(folder, tiny_checkpoint, tmp_path, vswin):
    # Through a pipe, and through a file the shell appends to (a rename would replace that file).
    result = vswin("classify", folder / "a.avi", "-m", tiny_checkpoint, *FAST, "-o", "/dev/fd/1", "--format", "csv")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == ["error: -o /dev/fd/1 is a pipe, not a file; for results on stdout give --format json|jsonl|csv without -o"]
    log = tmp_path / "log.txt"
    log.write_text("earlier lines\n")
    with log.open("a") as stdout:
        args = [sys.executable, "-m", "vswin_cli", "classify", str(folder / "a.avi"), "-m", str(tiny_checkpoint), *FAST, "-o", "/dev/fd/1", "--format", "csv"]
        result = subprocess.run(args, stdout=stdout, stderr=subprocess.PIPE, text=True, env={**os.environ, **SUBPROCESS_ENV}, timeout=300)
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: -o /dev/fd/1 is this run's own stdout or stderr; for results on stdout give --format json|jsonl|csv without -o"]
    assert log.read_text() == "earlier lines\n" and sorted(p.name for p in tmp_path.iterdir()) == ["log.txt"]


def test_closed_stdout_or_stderr_loses_nothing_and_mixes_nothing(folder, tiny_checkpoint, tmp_path):
    # Was: with stderr closed (2>&-) a batch ended at once in Python's None stderr, and one video's
    # summary line went into stdout; with stdout closed (>&-), a traceback.
    command = f'"{sys.executable}" -m vswin_cli classify "{folder / "a.avi"}" "{folder / "sub" / "c.avi"}" -m "{tiny_checkpoint}" ' + " ".join(FAST)
    env = {**os.environ, **SUBPROCESS_ENV}

    def shell(redirects: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f"{command} {redirects}"], capture_output=True, text=True, env=env, timeout=300)

    out = tmp_path / "out.jsonl"
    done = shell(f'-o "{out}" 2>&-')
    assert done.returncode == 0 and done.stdout == ""
    assert [Path(r["path"]).name for r in records_of(out.read_text())] == ["a.avi", "c.avi"]
    done = shell("--format jsonl 2>&-")
    assert done.returncode == 0 and [r["status"] for r in records_of(done.stdout)] == ["ok", "ok"]  # and nothing else
    done = shell("--format jsonl >&-")
    assert done.returncode == 2 and done.stderr.splitlines() == ["error: stdout is closed, so the results would be lost; give -o FILE"]
    done = shell(f'-o "{tmp_path / "again.jsonl"}" >&-')
    assert done.returncode == 0 and len(records_of((tmp_path / "again.jsonl").read_text())) == 2, done.stderr


def test_a_reader_that_goes_away_ends_the_run_quietly_and_a_full_disk_in_one_line(folder, tiny_checkpoint):
    # Was: `| head -1` ended with exit 1 and no word ("some videos failed"?); `> /dev/full` a traceback.
    command = f'"{sys.executable}" -m vswin_cli classify "{folder / "a.avi"}" "{folder / "sub" / "c.avi"}" -m "{tiny_checkpoint}" ' + " ".join(FAST)
    env = {**os.environ, **SUBPROCESS_ENV}
    for fmt in ("jsonl", "table"):
        # The reader is gone before the first record: the write meets a closed pipe, whatever the timing.
        done = subprocess.run(["bash", "-c", f"set -o pipefail; {command} --format {fmt} | true"], capture_output=True,
                              text=True, env=env, timeout=300)
        assert (done.returncode, done.stderr) == (141, ""), done.stderr
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    done = subprocess.run(["bash", "-c", f"{command} --format jsonl > /dev/full"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 1 and done.stderr.splitlines()[-1:] == [
        "error: could not write the results to stdout (No space left on device); send them to a disk with room, or free some"]
    assert "Traceback" not in done.stderr


def test_a_stderr_that_cannot_be_written_loses_the_messages_not_the_run(folder, tiny_checkpoint, tmp_path):
    # Was: the first warning to a full disk (2>>log) or to a reader gone away (2>&1 | head -1)
    # ended the run with exit 1 before any video, so no output at all; a finished run exited 1.
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a.avi", "sub/c.avi"):
        shutil.copy(folder / name, videos / Path(name).name)
    (videos / "notes.txt").write_text("not a video: one warning before any video")
    env = {**os.environ, **SUBPROCESS_ENV}
    command = [sys.executable, "-m", "vswin_cli", "classify", str(videos), "-m", str(tiny_checkpoint), *FAST]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before vswin writes anything
    try:
        gone = subprocess.run([*command, "-o", str(tmp_path / "gone.jsonl")], stderr=write_end, env=env, timeout=300)
    finally:
        os.close(write_end)
    assert gone.returncode == 0
    assert sorted(Path(r["path"]).name for r in records_of((tmp_path / "gone.jsonl").read_text())) == ["a.avi", "c.avi"]
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    with open("/dev/full", "w") as full:
        done = subprocess.run([*command, "-o", str(tmp_path / "full.jsonl")], stderr=full, env=env, timeout=300)
        usage = subprocess.run([*command, "--clips", "zero"], stderr=full, env=env, timeout=300)
    assert done.returncode == 0
    assert sorted(Path(r["path"]).name for r in records_of((tmp_path / "full.jsonl").read_text())) == ["a.avi", "c.avi"]
    assert usage.returncode == 2


def test_a_table_on_a_stdout_that_cannot_encode_a_name_escapes_it(folder, tiny_checkpoint):
    # Was: a UnicodeEncodeError traceback at the first such name (LC_ALL=C, an ASCII or Latin-1
    # terminal), and the rest of the batch never classified.
    args = [sys.executable, "-m", "vswin_cli", "classify", folder / "b clip é.avi", folder / "a.avi", "-m", tiny_checkpoint,
            *FAST, "--format", "table"]
    done = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=300,
                          env={**os.environ, **SUBPROCESS_ENV, "PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    names = [line for line in done.stdout.splitlines() if line.endswith(".avi")]
    assert names == [str(folder / "b clip \\xe9.avi"), str(folder / "a.avi")]


@pytest.mark.parametrize("command, output, kept", [("extract-features", "feats", "feats/index.jsonl"),
                                                   ("classify", "labels.csv", "labels.csv.partial.jsonl")])
def test_a_file_vswin_keeps_beside_its_output_cannot_be_its_stderr(folder, tiny_checkpoint, tmp_path, command, output, kept):
    # Was: extract-features 2> feats/index.jsonl wrote its summary over the first index line, and the
    # next --resume refused the index.
    (tmp_path / "feats").mkdir()
    line = (f'"{sys.executable}" -m vswin_cli {command} "{folder / "a.avi"}" -o "{tmp_path / output}" -m "{tiny_checkpoint}" '
            + " ".join(FAST) + f' 2> "{tmp_path / kept}"')
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env={**os.environ, **SUBPROCESS_ENV}, timeout=300)
    assert done.returncode == 2
    assert (tmp_path / kept).read_text().splitlines() == [
        f"error: {tmp_path / kept}, which vswin writes for -o {tmp_path / output}, "
        "is this run's own stdout or stderr; send them elsewhere"]


@pytest.mark.parametrize("command, remedy", [
    ("probe {video}", "send it to a file: vswin probe ... > FILE"),
    ("models", "send it to a file: vswin models > FILE"),
])
def test_probe_and_models_refuse_a_closed_stdout(folder, command, remedy):
    # Was: nothing written, exit 0.
    line = f'"{sys.executable}" -m vswin_cli {command.format(video=folder / "a.avi")} >&-'
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env={**os.environ, **SUBPROCESS_ENV}, timeout=300)
    assert done.returncode == 2 and done.stderr.splitlines() == [f"error: stdout is closed, so the results would be lost; {remedy}"]


def test_resume_with_other_class_names_redoes_the_records_that_show_them(folder, tiny_checkpoint, invoke, tmp_path):
    # Was: the done records kept the old names, the rest got the new ones: one file, two label sets.
    out = tmp_path / "out.jsonl"
    videos = [folder / "a.avi", folder / "sub" / "c.avi"]
    code, _, err = invoke("classify", *videos, "-m", tiny_checkpoint, *FAST, "-o", out)
    assert code == 0, err
    renamed = tmp_path / "renamed.txt"
    renamed.write_text("".join(f"renamed {i}\n" for i in range(len(TINY_LABELS))))
    code, _, err = invoke("classify", *videos, "-m", tiny_checkpoint, *FAST, "-o", out, "--labels", renamed, "--resume")
    assert code == 0 and err.splitlines()[-1] == f"2 ok, 0 failed; results in {out}", err
    records = records_of(out.read_text())
    assert len(records) == 2
    assert all(p["label"] == f"renamed {p['index']}" for r in records for p in r["predictions"])
    # The same names again: nothing to redo.
    code, _, err = invoke("classify", *videos, "-m", tiny_checkpoint, *FAST, "-o", out, "--labels", renamed, "--resume")
    assert code == 0 and "0 ok, 0 failed, 2 already done (--resume)" in err, err


def test_help_survives_python_oo(vswin):
    # Typer takes each command's help from its docstring, which python -OO strips: was no text at all.
    for args, line in ((["--help"], "Label videos with the top-k classes"), (["classify", "--help"], "exit 0: all ok")):
        done = vswin(*args, env={"PYTHONOPTIMIZE": "2"})
        assert done.returncode == 0 and line in done.stdout, done.stdout


def test_an_output_that_is_the_model_or_the_labels_file_is_refused(folder, tiny_checkpoint, invoke, tmp_path):
    # Was: exit 0, and the model (or the class names) replaced by the results.
    model = tmp_path / "model.safetensors"
    model.write_bytes(tiny_checkpoint.read_bytes())
    labels = tmp_path / "classes.csv"
    labels.write_text("".join(f"class {i}\n" for i in range(len(TINY_LABELS))), encoding="utf-8")
    before = model.read_bytes(), labels.read_bytes()
    for output, fmt in ((model, "json"), (labels, "csv")):
        code, out, err = invoke("classify", folder / "a.avi", "-m", model, "--labels", labels, *FAST, "-o", output, "--format", fmt)
        assert code == 2 and out == ""
        assert err.splitlines() == [f"error: -o {output} would overwrite the input {output}; choose another output"]
    assert (model.read_bytes(), labels.read_bytes()) == before


def test_resume_redoes_records_of_another_precision(folder, tiny_checkpoint, invoke, tmp_path):
    # Was: "1 already done": bf16 probabilities (a few percent off) kept in a float32 run's output.
    out = tmp_path / "out.jsonl"
    video = folder / "a.avi"
    code, _, err = invoke("classify", video, "-m", tiny_checkpoint, *FAST, "-o", out, "--precision", "bf16")
    assert code == 0, err
    assert records_of(out.read_text())[0]["views"] == {"clips": 2, "crops": 1, "clip_len": 8, "frame_interval": 2, "precision": "bf16"}
    code, _, err = invoke("classify", video, "-m", tiny_checkpoint, *FAST, "-o", out, "--resume")
    assert code == 0 and err.splitlines()[-1] == f"1 ok, 0 failed; results in {out}", err
    [record] = records_of(out.read_text())
    assert record["views"] == {"clips": 2, "crops": 1, "clip_len": 8, "frame_interval": 2}  # float32: as before
    code, _, err = invoke("classify", video, "-m", tiny_checkpoint, *FAST, "-o", out, "--resume", "--precision", "fp32")
    assert code == 0 and "1 already done" in err, err


def test_columns_0_still_prints_the_results_and_the_summary(folder, tiny_checkpoint, tmp_path):
    # Was: Rich took COLUMNS=0 as a width of nothing: no table, no summary, exit 0.
    args = ("classify", str(folder / "a.avi"), "-m", str(tiny_checkpoint), *FAST)
    env = {**os.environ, **SUBPROCESS_ENV, "COLUMNS": "0"}
    done = subprocess.run([sys.executable, "-m", "vswin_cli", *args, "--format", "table"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and "action" in done.stdout and done.stderr.splitlines()[-1] == "1 ok, 0 failed", done
    done = subprocess.run([sys.executable, "-m", "vswin_cli", *args, "-o", str(tmp_path / "x.csv")], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0 and done.stderr.splitlines()[-1] == f"1 ok, 0 failed; results in {tmp_path / 'x.csv'}", done


@pytest.mark.parametrize("suffix", ["csv", "json", "jsonl"])
def test_resume_never_rewrites_records_of_videos_it_does_not_redo_into_another_form(folder, tiny_checkpoint, invoke, tmp_path, suffix):
    # Was: a.avi's labels 3-5 lost for good when b.avi was added with --top-k 2 (the CSV's columns
    # follow this run), or one .json with two label sets after another --labels.
    out = tmp_path / f"out.{suffix}"
    a, b = folder / "a.avi", folder / "sub" / "c.avi"
    code, _, err = invoke("classify", a, "-m", tiny_checkpoint, *FAST, "-o", out)
    assert code == 0, err
    before = out.read_bytes()
    renamed = tmp_path / "renamed.txt"
    renamed.write_text("".join(f"renamed {i}\n" for i in range(len(TINY_LABELS))), encoding="utf-8")
    for extra, form in ((("--top-k", "2"), "--top-k 5"), (("--labels", renamed), "other class names (--labels)")):
        code, _, err = invoke("classify", b, "-m", tiny_checkpoint, *FAST, "-o", out, "--resume", *extra)
        assert code == 2 and err.splitlines() == [
            f"error: -o {out} holds results made with {form} (e.g. {a}), a video this run does not redo; resume with "
            "the options that made them, give those videos too, or choose another output"], err
        assert out.read_bytes() == before
    code, _, err = invoke("classify", a, b, "-m", tiny_checkpoint, *FAST, "-o", out, "--resume", "--top-k", "2")
    assert code == 0, err  # every video redone: one form


@pytest.mark.parametrize("suffix", ["csv", "json", "jsonl"])
def test_resume_adds_videos_beside_records_of_the_same_form(folder, tiny_checkpoint, invoke, tmp_path, suffix):
    out = tmp_path / f"out.{suffix}"
    a, b = folder / "a.avi", folder / "sub" / "c.avi"
    code, _, err = invoke("classify", a, "-m", tiny_checkpoint, *FAST, "-o", out, "--top-k", "3")
    assert code == 0, err
    code, _, err = invoke("classify", b, "-m", tiny_checkpoint, *FAST, "-o", out, "--top-k", "3", "--resume")
    assert code == 0, err
    from vswin_cli.formats import read_records

    assert [Path(r.path).name for r in read_records(out)] == ["a.avi", "c.avi"]


@pytest.mark.parametrize("command", ["classify", "extract-features"])
def test_o_dash_is_refused_not_a_file_named_dash(folder, tiny_checkpoint, invoke, tmp_path, monkeypatch, command):
    # Was: `-o - --format jsonl` wrote a file named "-" and said "results in -", stdout empty.
    monkeypatch.chdir(tmp_path)
    code, out, err = invoke(command, folder / "a.avi", "-m", tiny_checkpoint, *FAST, "-o", "-",
                            *(["--format", "jsonl"] if command == "classify" else []))
    remedy = ("for results on stdout give --format json|jsonl|csv without -o" if command == "classify"
              else "features go to a folder: give its name")
    assert (code, out) == (2, "") and err.splitlines() == [f"error: -o - would make a file named '-', not write to stdout; {remedy}"]
    assert list(tmp_path.iterdir()) == []
