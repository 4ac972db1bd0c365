"""`vswin extract-features`: arrays, sidecars, index, mirroring, resume, agreement with classify."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import media
from conftest import SUBPROCESS_ENV, TINY_LABELS

FAST = ("--clip-len", "8", "--clips", "2", "--crops", "3")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    (root / "a").mkdir()
    (root / "b").mkdir()
    media.encode_cv2(root / "a" / "x.avi", frames=40, size=(64, 48))
    media.encode_cv2(root / "b" / "x.avi", frames=24, size=(48, 64))  # same name, other folder
    media.encode_cv2(root / "top é.avi", frames=30, size=(80, 48))
    (root / "b" / "bad.avi").write_text("not a video")
    return root


def decode_rgb(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def reference_features(model, path: Path, clip_len: int, interval: int, clips: int, crops: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-view forward_features of the protocol's views, built here step by step: (pooled (C,), per clip (N, C))."""
    from vswin_cli.protocol import KINETICS
    from vswin_cli.sampling import official_clip_indices
    from vswin_cli.transforms import preprocess_clip

    frames = decode_rgb(path)
    protocol = KINETICS.with_overrides(clip_len=clip_len, frame_interval=interval, num_clips=clips, num_crops=crops)
    per_clip = []
    with torch.inference_mode():
        for indices in official_clip_indices(len(frames), clip_len, interval, clips):
            views = preprocess_clip([frames[i] for i in indices], protocol)  # (crops, 3, T, H, W)
            per_clip.append(torch.stack([model.forward_features(v[None])[0] for v in views]))
    stacked = torch.stack(per_clip)  # (N, crops, C)
    return stacked.mean(dim=(0, 1)).numpy(), stacked.mean(dim=1).numpy()


def test_features_mirror_tree_and_equal_forward_features(tree, tiny_checkpoint, invoke, tmp_path):
    from vswin_cli.checkpoints import load_checkpoint

    out = tmp_path / "feats"
    code, stdout, err = invoke("extract-features", tree, "-r", "-o", out, "-m", tiny_checkpoint, *FAST)
    assert code == 1, err  # bad.avi failed
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["a/x.avi.json", "a/x.avi.npy", "b/x.avi.json", "b/x.avi.npy", "index.jsonl", "top é.avi.json", "top é.avi.npy"]
    model = load_checkpoint(tiny_checkpoint).model
    for rel in ("a/x.avi", "b/x.avi", "top é.avi"):
        array = np.load(out / f"{rel}.npy", allow_pickle=False)
        assert array.dtype == np.float32 and array.shape == (model.config.num_features,)
        pooled, _ = reference_features(model, tree / rel, 8, 2, 2, 3)
        np.testing.assert_allclose(array, pooled, atol=1e-5)
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    by_name = {Path(e["path"]).relative_to(tree).as_posix(): e for e in index}
    assert by_name["b/bad.avi"]["status"] == "error" and by_name["b/bad.avi"]["error"]
    assert by_name["a/x.avi"]["output"] == "a/x.avi.npy" and by_name["a/x.avi"]["status"] == "ok"
    sidecar = json.loads((out / "a/x.avi.json").read_text())
    assert sidecar["model"] == str(tiny_checkpoint) and len(sidecar["checkpoint_sha256"]) == 64
    assert sidecar["source"]["size"] == (tree / "a/x.avi").stat().st_size
    # 40 frames, 2 clips of 8 x 2: avg = (40 - 16 + 1) / 2 = 12.5, starts int(6.25) = 6 and int(18.75) = 18.
    assert [c["frames"] for c in sidecar["clips"]] == [list(range(6, 21, 2)), list(range(18, 33, 2))]
    assert sidecar["protocol"]["clip_len"] == 8


def test_per_clip_float16_and_logits_agree_with_classify(tree, tiny_checkpoint, invoke, tmp_path):
    from vswin_cli.checkpoints import load_checkpoint

    video = tree / "a" / "x.avi"
    out = tmp_path / "feats"
    code, _, err = invoke("extract-features", video, "-o", out, "-m", tiny_checkpoint, *FAST, "--per-clip", "--dtype", "float16", "--with-logits")
    assert code == 0, err
    array = np.load(out / "x.avi.npy", allow_pickle=False)
    model = load_checkpoint(tiny_checkpoint).model
    _, per_clip = reference_features(model, video, 8, 2, 2, 3)
    assert array.dtype == np.float16 and array.shape == per_clip.shape == (2, model.config.num_features)
    np.testing.assert_allclose(array.astype(np.float32), per_clip, rtol=2e-3, atol=2e-3)
    clip_scores = np.load(out / "x.avi.scores.npy", allow_pickle=False)
    _, stdout, _ = invoke("classify", video, "-m", tiny_checkpoint, *FAST, "--format", "json", "--top-k", "10")
    record = json.loads(stdout)[0]
    for clip, scores in zip(record["clips"], clip_scores):
        for p in clip["predictions"]:
            assert scores[p["index"]] == pytest.approx(p["score"], abs=1e-7)
    # The sidecar names the score columns (was a sentence, no names).
    sidecar = json.loads((out / "x.avi.json").read_text())
    assert sidecar["labels"] == TINY_LABELS
    assert [sidecar["labels"][p["index"]] for p in record["clips"][0]["predictions"]] == [p["label"] for p in record["clips"][0]["predictions"]]


def test_head_on_pooled_features_reproduces_a_single_view_score(tree, tiny_checkpoint, invoke, tmp_path):
    from vswin_cli.checkpoints import load_checkpoint

    video = tree / "top é.avi"
    single = ("--clip-len", "8", "--clips", "1", "--crops", "1")
    code, _, _ = invoke("extract-features", video, "-o", tmp_path, "-m", tiny_checkpoint, *single)
    assert code == 0
    features = torch.from_numpy(np.load(tmp_path / "top é.avi.npy"))
    model = load_checkpoint(tiny_checkpoint).model
    with torch.inference_mode():
        probs = torch.softmax(model.classify_features(features[None]), dim=-1)[0].numpy()
    _, stdout, _ = invoke("classify", video, "-m", tiny_checkpoint, *single, "--format", "json", "--top-k", "10")
    for p in json.loads(stdout)[0]["predictions"]:
        assert probs[p["index"]] == pytest.approx(p["score"], abs=1e-6)


def test_resume_touches_nothing_already_written(tree, tiny_checkpoint, invoke, tmp_path):
    out = tmp_path / "feats"
    invoke("extract-features", tree, "-r", "-o", out, "-m", tiny_checkpoint, *FAST)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.np[yz]")}
    time.sleep(0.05)
    code, _, _ = invoke("extract-features", tree, "-r", "-o", out, "-m", tiny_checkpoint, *FAST, "--resume")
    assert code == 1  # bad.avi is retried and fails again
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.np[yz]")} == before
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(index) == 4 and sorted(e["status"] for e in index) == ["error", "ok", "ok", "ok"]


def test_killed_run_leaves_no_truncated_npy(tmp_path, tiny_checkpoint, invoke):
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(8):
        media.encode_cv2(videos / f"v{i}.avi", frames=40, size=(64, 48))
    out = tmp_path / "feats"
    env = {**os.environ, **SUBPROCESS_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "vswin_cli", "extract-features", str(videos), "-o", str(out), "-m", str(tiny_checkpoint), "--batch-size", "1", "--clip-len", "8"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and len(list(out.glob("*.npy"))) < 2:
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=60)
    for npy in out.glob("*.npy"):
        assert np.load(npy, allow_pickle=False).shape == (16 * 8,)  # every .npy there is whole
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, "--resume", "--clip-len", "8")
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.npy")) == [f"v{i}.avi.npy" for i in range(8)]


def test_python_api_yields_the_same_arrays(tree, tiny_checkpoint, invoke, tmp_path):
    import vswin_cli

    video = tree / "a" / "x.avi"
    results = list(vswin_cli.extract_features([video], model=str(tiny_checkpoint), clip_len=8, clips=2, crops=3))
    assert len(results) == 1 and results[0][0] == str(video)
    invoke("extract-features", video, "-o", tmp_path, "-m", tiny_checkpoint, *FAST)
    np.testing.assert_array_equal(results[0][1], np.load(tmp_path / "x.avi.npy"))


# --- where the features go ---------------------------------------------------------------------


def _videos(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        media.encode_cv2(folder / f"v{i}.avi", frames=40, size=(64, 48))
    return folder


def test_second_run_into_the_same_folder_is_refused(tmp_path, tiny_checkpoint, invoke):
    videos = _videos(tmp_path / "videos", 6)
    out = tmp_path / "feats"
    env = {**os.environ, **SUBPROCESS_ENV}
    first = subprocess.Popen([sys.executable, "-m", "vswin_cli", "extract-features", str(videos), "-o", str(out), "-m", str(tiny_checkpoint), "--batch-size", "1", "--clip-len", "8"], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and first.poll() is None and not list(out.glob("*.npy")):
        time.sleep(0.02)
    assert first.poll() is None, "the first run ended before the second started"
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST)
    assert code == 2
    assert err.splitlines() == [f"error: another vswin run is writing {out}; wait for it to finish or choose another output"]
    _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert sorted(Path(e["path"]).name for e in index) == [f"v{i}.avi" for i in range(6)]
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith((".npy", ".json"))) == ["index.jsonl"]


def test_full_disk_while_writing_features_is_one_line_and_resumes(tmp_path, tiny_checkpoint, invoke, monkeypatch):
    videos = _videos(tmp_path / "videos", 3)
    out = tmp_path / "feats"
    real_save = np.save
    saved = []

    def disk_full_on_the_second(file, array, **kwargs):
        saved.append(1)
        if len(saved) == 2:
            file.write(b"\x93NUMPY half an array")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(file, array, **kwargs)

    monkeypatch.setattr(np, "save", disk_full_on_the_second)
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST)
    monkeypatch.setattr(np, "save", real_save)
    assert code == 1
    assert err.splitlines() == [f"error: cannot write {out / 'v1.avi.npy'}: no space left on device; free some space or choose another output"]
    assert sorted(p.name for p in out.iterdir()) == ["index.jsonl", "v0.avi.json", "v0.avi.npy"]  # no temp files
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST, "--resume")
    assert code == 0, err
    assert sorted(p.name for p in out.glob("*.npy")) == ["v0.avi.npy", "v1.avi.npy", "v2.avi.npy"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_read_only_output_folder_is_one_line(tree, tiny_checkpoint, invoke, tmp_path, read_only):
    out = tmp_path / "feats"
    out.mkdir()
    read_only(out)
    code, _, err = invoke("extract-features", tree / "a" / "x.avi", "-o", out, "-m", tiny_checkpoint, *FAST)
    assert code == 1
    # The file that could not be made is named: the lock comes first (was: the folder, also for a writable output file's lock).
    assert err.splitlines() == [f"error: cannot write {out / 'index.jsonl.lock'}: permission denied; choose an output in a folder you can write to"]


def test_features_that_would_overwrite_an_input_are_refused(tree, tiny_checkpoint, invoke, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    data = (tree / "a" / "x.avi").read_bytes()
    (videos / "x.avi").write_bytes(data)
    # A video (found by its bytes) whose name is the sidecar that x.avi's features would get.
    (videos / "x.avi.json").write_bytes(data)
    code, _, err = invoke("extract-features", videos, "-o", videos, "-m", tiny_checkpoint, *FAST)
    assert code == 2
    assert err.splitlines() == [f"error: -o {videos} would overwrite the input {videos / 'x.avi.json'}; choose another output"]
    assert sorted(p.name for p in videos.iterdir()) == ["x.avi", "x.avi.json"]
    assert (videos / "x.avi.json").read_bytes() == data
    # The input folder itself is a fine output when no file lands on a video.
    (videos / "x.avi.json").unlink()
    code, _, err = invoke("extract-features", videos, "-o", videos, "-m", tiny_checkpoint, *FAST)
    assert code == 0, err
    assert sorted(p.name for p in videos.iterdir()) == ["index.jsonl", "x.avi", "x.avi.json", "x.avi.npy"]


# --- names, earlier runs and sidecars ------------------------------------------------------------


def test_names_near_the_file_name_limit_are_cut_and_do_not_stop_the_batch(tree, tiny_checkpoint, invoke, tmp_path):
    from vswin_cli.checkpoints import load_checkpoint

    videos = tmp_path / "videos"
    videos.mkdir()
    data = (tree / "a" / "x.avi").read_bytes()
    long_ascii = "x" * 246 + ".avi"  # 250 bytes: .npy fits, .scores.npy and a temporary name do not
    long_utf8 = "é" * 125 + ".avi"  # 254 bytes in 129 characters
    for name in (long_ascii, long_utf8, "short.avi"):
        (videos / name).write_bytes(data)
    out = tmp_path / "feats"
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST, "--with-logits")
    assert code == 0, err
    names = sorted(p.name for p in out.iterdir())
    assert all(len(os.fsencode(name)) <= 255 for name in names), names
    assert len(names) == 3 * 3 + 1  # .npy, .json and .scores.npy per video, and the index
    index = [json.loads(line) for line in (out / "index.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(Path(e["path"]).name for e in index) == sorted([long_ascii, long_utf8, "short.avi"])
    assert [e["status"] for e in index] == ["ok"] * 3
    outputs = {e["output"] for e in index}
    assert len(outputs) == 3 and "short.avi.npy" in outputs
    pooled, _ = reference_features(load_checkpoint(tiny_checkpoint).model, videos / "short.avi", 8, 2, 2, 3)
    for entry in index:
        np.testing.assert_allclose(np.load(out / entry["output"], allow_pickle=False), pooled, atol=1e-5)
        assert json.loads((out / entry["sidecar"]).read_text(encoding="utf-8"))["source"]["path"] == entry["path"]
    for name in (long_ascii, long_utf8):  # the cut names still start like the video's
        assert any(o.startswith(name[:50]) for o in outputs)


def test_resume_into_a_folder_never_hands_one_videos_file_to_another(tree, tiny_checkpoint, invoke, tmp_path):
    from vswin_cli.checkpoints import load_checkpoint

    out = tmp_path / "feats"
    # Two runs into one folder, over two roots that both hold x.avi.
    code, _, err = invoke("extract-features", tree / "b" / "x.avi", "-o", out, "-m", tiny_checkpoint, *FAST)
    assert code == 0, err
    first = (out / "x.avi.npy").read_bytes()
    code, _, err = invoke("extract-features", tree / "a" / "x.avi", "-o", out, "-m", tiny_checkpoint, *FAST, "--resume")
    assert code == 0, err
    assert (out / "x.avi.npy").read_bytes() == first  # b's features stay b's
    index = {Path(e["path"]).parent.name: e for e in map(json.loads, (out / "index.jsonl").read_text().splitlines())}
    assert sorted(index) == ["a", "b"] and index["b"]["output"] == "x.avi.npy"
    assert index["a"]["output"] != "x.avi.npy" and index["a"]["sidecar"] != "x.avi.json"
    model = load_checkpoint(tiny_checkpoint).model
    for folder, entry in index.items():
        pooled, _ = reference_features(model, tree / folder / "x.avi", 8, 2, 2, 3)
        np.testing.assert_allclose(np.load(out / entry["output"]), pooled, atol=1e-5)
        assert json.loads((out / entry["sidecar"]).read_text())["source"]["path"] == entry["path"]
    # b again: done, nothing rewritten.
    code, _, err = invoke("extract-features", tree / "b" / "x.avi", "-o", out, "-m", tiny_checkpoint, *FAST, "--resume")
    assert code == 0 and "1 already done" in err
    assert (out / "x.avi.npy").read_bytes() == first


def test_a_video_that_fails_now_keeps_no_features_from_an_earlier_run(tree, tiny_checkpoint, invoke, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "v.avi").write_bytes((tree / "a" / "x.avi").read_bytes())
    (videos / "w.avi").write_bytes((tree / "a" / "x.avi").read_bytes())
    out = tmp_path / "feats"
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST, "--with-logits")
    assert code == 0, err
    (videos / "v.avi").write_text("not a video any more")
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST, "--with-logits")
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["index.jsonl", "w.avi.json", "w.avi.npy", "w.avi.scores.npy"]
    index = {Path(e["path"]).name: e for e in map(json.loads, (out / "index.jsonl").read_text().splitlines())}
    assert index["v.avi"]["status"] == "error" and index["v.avi"]["output"] is None


def test_resume_with_other_options_leaves_only_files_of_the_new_ones(tree, tiny_checkpoint, invoke, tmp_path):
    video = tree / "a" / "x.avi"
    code, _, err = invoke("extract-features", video, "-o", tmp_path, "-m", tiny_checkpoint, *FAST, "--with-logits")
    assert code == 0, err
    assert (tmp_path / "x.avi.scores.npy").is_file()
    code, _, err = invoke("extract-features", video, "-o", tmp_path, "-m", tiny_checkpoint, *FAST, "--resume", "--per-clip", "--dtype", "float16")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.jsonl", "x.avi.json", "x.avi.npy"]  # no scores of the old views
    array = np.load(tmp_path / "x.avi.npy")
    assert array.dtype == np.float16 and array.shape == (2, 16 * 8)
    sidecar = json.loads((tmp_path / "x.avi.json").read_text())
    assert sidecar["dtype"] == "float16" and sidecar["shape"] == [2, 128] and sidecar["labels"] is None


def test_resume_with_logits_redoes_videos_whose_class_names_changed(tree, tiny_checkpoint, invoke, tmp_path):
    # Was: counted as done, so one folder held scores named by two label sets (classify redoes them).
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("".join(f"first {i}\n" for i in range(10)))
    second.write_text("".join(f"second {i}\n" for i in range(10)))
    out = tmp_path / "feats"
    video, other = tree / "a" / "x.avi", tree / "top é.avi"
    code, _, err = invoke("extract-features", video, "-o", out, "-m", tiny_checkpoint, *FAST, "--with-logits", "--labels", first)
    assert code == 0, err
    code, _, err = invoke("extract-features", video, other, "-o", out, "-m", tiny_checkpoint, *FAST, "--with-logits",
                          "--labels", second, "--resume")
    assert code == 0 and "already done" not in err, err
    for name in ("x.avi", "top é.avi"):
        assert json.loads((out / f"{name}.json").read_text())["labels"] == [f"second {i}" for i in range(10)]
    code, _, err = invoke("extract-features", video, other, "-o", out, "-m", tiny_checkpoint, *FAST, "--with-logits",
                          "--labels", second, "--resume")
    assert code == 0 and "0 ok, 0 failed, 2 already done" in err, err
    # Without scores the class names name nothing in the folder: the features stand.
    code, _, err = invoke("extract-features", video, "-o", tmp_path / "plain", "-m", tiny_checkpoint, *FAST, "--labels", first)
    code, _, err = invoke("extract-features", video, "-o", tmp_path / "plain", "-m", tiny_checkpoint, *FAST, "--labels", second,
                          "--resume")
    assert code == 0 and "1 already done" in err, err


def test_resume_from_another_folder_than_the_relative_paths_is_refused(tree, tiny_checkpoint, invoke, tmp_path, monkeypatch):
    # Was: every video redone, its index line kept twice and its features written a second time
    # under a hashed name (x.avi.npy and x.avi.<hash>.npy).
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "x.avi").write_bytes((tree / "a" / "x.avi").read_bytes())
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke("extract-features", "videos", "-o", tmp_path / "feats", "-m", tiny_checkpoint, *FAST)
    assert code == 0, err
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, _, err = invoke("extract-features", "../videos", "-o", tmp_path / "feats", "-m", tiny_checkpoint, *FAST, "--resume")
    assert code == 2 and "names 'videos/x.avi' relative to the folder its run started in" in err, err
    assert sorted(p.name for p in (tmp_path / "feats").iterdir()) == ["index.jsonl", "x.avi.json", "x.avi.npy"]
    assert len((tmp_path / "feats" / "index.jsonl").read_text().splitlines()) == 1


def test_sidecar_of_sliding_windows_describes_the_windows(tree, tiny_checkpoint, invoke, tmp_path):
    video = tree / "a" / "x.avi"  # 40 frames at 25 fps: 1.6 s
    code, _, err = invoke("extract-features", video, "-o", tmp_path, "-m", tiny_checkpoint, "--clip-len", "8",
                          "--frame-interval", "1", "--crops", "1", "--stride", "0.4", "--per-clip")
    assert code == 0, err
    array = np.load(tmp_path / "x.avi.npy")
    sidecar = json.loads((tmp_path / "x.avi.json").read_text())
    starts = [clip["frames"][0] for clip in sidecar["clips"]]
    assert starts == [0, 10, 20, 30][: len(starts)] and len(starts) >= 3  # one window every 0.4 s = 10 frames
    assert array.shape[0] == len(sidecar["clips"]) == sidecar["protocol"]["num_clips"]
    assert sidecar["protocol"]["sampling"] == "windows" and sidecar["protocol"]["stride"] == 0.4


@pytest.mark.parametrize("recursive", [True, False], ids=["-r", "no -r"])
def test_an_output_folder_inside_the_input_folder_is_not_an_input(tmp_path, tiny_checkpoint, invoke, recursive):
    # The usual layout `videos/ -o videos/feats`: a second run must not walk into its own output
    # (nor report its .npy and .json files as skipped non-videos, or the folder as a skipped one).
    videos = tmp_path / "videos"
    videos.mkdir()
    media.encode_cv2(videos / "v.avi", frames=24, size=(48, 32))
    out = videos / "feats"
    flags = ["-r"] if recursive else []
    code, _, _ = invoke("extract-features", videos, *flags, "-o", out, "-m", tiny_checkpoint, *FAST)
    assert code == 0 and (out / "v.avi.npy").is_file()
    code, _, err = invoke("extract-features", videos, *flags, "-o", out, "-m", tiny_checkpoint, *FAST)
    assert code == 0, err
    assert "skipped" not in err, err
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert [Path(e["path"]).name for e in index] == ["v.avi"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy")) == ["v.avi.npy"]
    # Given itself, the output folder is listed like any folder (features beside the videos).
    beside = tmp_path / "beside"
    beside.mkdir()
    media.encode_cv2(beside / "w.avi", frames=24, size=(48, 32))
    code, _, err = invoke("extract-features", beside, "-o", beside, "-m", tiny_checkpoint, *FAST)
    assert code == 0 and (beside / "w.avi.npy").is_file(), err


def test_a_video_named_like_anothers_scores_file_gets_its_own_names(tmp_path, tiny_checkpoint, invoke):
    # Was: the features of `x.avi.scores` were written to `x.avi.scores.npy`, x.avi's scores file.
    videos = tmp_path / "videos"
    videos.mkdir()
    media.encode_cv2(videos / "x.avi", frames=40, size=(64, 48))
    media.encode_cv2(tmp_path / "y.avi", frames=24, size=(64, 48)).rename(videos / "x.avi.scores")  # a video by its content
    out = tmp_path / "feats"
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST, "--with-logits")
    assert code == 0, err
    index = {Path(e["path"]).name: e for e in map(json.loads, (out / "index.jsonl").read_text().splitlines())}
    npy = {name: out / entry["output"] for name, entry in index.items()}
    assert len(set(npy.values())) == 2 and all(path.name.endswith(".npy") for path in npy.values())
    for name, path in npy.items():
        scores = np.load(path.with_name(path.name[: -len(".npy")] + ".scores.npy"))
        assert np.load(path).shape == (128,) and scores.shape == (10,), name
        assert scores.sum() == pytest.approx(1.0, abs=1e-5)


def test_a_run_stopped_while_replacing_a_videos_files_leaves_no_entry_vouching_for_them(tmp_path, tiny_checkpoint, invoke, monkeypatch):
    # Was: a --per-clip --resume run replaced x's .npy, stopped (disk full) before its index line,
    # and a --resume with the first run's options then took the (N, C) array for its (C,) one.
    import vswin_cli.features as features

    videos = _videos(tmp_path / "videos", 1)
    out = tmp_path / "feats"
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST)
    assert code == 0, err
    real = features.write_npy_atomic

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(features, "write_npy_atomic", disk_full)  # the .npy, after the new sidecar
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST, "--per-clip", "--resume")
    assert code == 1 and "no space left on device" in err
    assert not (out / "v0.avi.npy").exists() and not (out / "v0.avi.json").exists()  # no half of a replacement
    monkeypatch.setattr(features, "write_npy_atomic", real)
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST, "--resume")
    assert code == 0 and err.splitlines()[-1] == f"1 ok, 0 failed; results in {out}", err  # redone, not "already done"
    assert np.load(out / "v0.avi.npy").shape == (128,)
    [entry] = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert entry["status"] == "ok" and entry["shape"] == [128]


def test_a_video_whose_features_path_is_too_long_fails_alone(tiny_checkpoint, invoke, tmp_path):
    # Was: "cannot write ...: file name too long" stopped the batch, and every --resume stopped there again.
    videos = tmp_path / "in"
    deep = videos
    while len(os.fsencode(os.path.abspath(deep))) < 3950:
        deep = deep / ("n" * 60)
    deep.mkdir(parents=True)
    media.encode_cv2(videos / "a_first.avi", frames=12, size=(40, 32))
    media.encode_cv2(deep / "deep.avi", frames=12, size=(40, 32))
    (videos / "zzz").mkdir()
    media.encode_cv2(videos / "zzz" / "z_last.avi", frames=12, size=(40, 32))
    out = tmp_path / ("features_" + "x" * 100)
    args = ("extract-features", videos, "-r", "-o", out, "-m", tiny_checkpoint, "--clip-len", "4", "--clips", "1", "--crops", "1")
    code, _, err = invoke(*args)
    assert code == 1, err
    assert sorted(p.name for p in out.rglob("*.npy")) == ["a_first.avi.npy", "z_last.avi.npy"]
    entries = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    deep_entry = next(e for e in entries if e["path"].endswith("deep.avi"))
    assert deep_entry["status"] == "error" and "a path longer than the file system takes" in deep_entry["error"]
    code, _, err = invoke(*args, "--resume")
    assert code == 1 and "0 ok, 1 failed, 2 already done" in err, err


def test_extract_features_help_says_what_resume_compares(invoke):
    # Was: "the same model, protocol and --top-k", an option extract-features does not have.
    code, out, _ = invoke("extract-features", "--help")
    text = " ".join(out.split()).replace("- ", "-")  # unwrapped, also inside option names
    assert code == 0 and "--top-k" not in text and "--per-clip, --dtype and --with-logits (and class names, with --with-logits)" in text


def test_features_beyond_float16s_range_fail_the_video_instead_of_writing_infinity(tree, tiny_checkpoint, invoke, tmp_path):
    # Was: 68 of 128 entries inf in the .npy, "status": "ok", exit 0, and a NumPy warning naming vswin's code.
    from vswin_cli.checkpoints import load_checkpoint, save_native

    loaded = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        loaded.model.norm.weight.mul_(1e6)  # finite float32 features in the hundreds of thousands
    large = tmp_path / "large.safetensors"
    save_native(loaded.model, large, labels=loaded.labels)
    video = tree / "a" / "x.avi"
    out = tmp_path / "feats"
    code, _, err = invoke("extract-features", video, "-o", out, "-m", large, *FAST, "--dtype", "float16")
    assert code == 1 and "RuntimeWarning" not in err
    [entry] = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert entry["status"] == "error" and entry["error"].endswith("beyond float16's range (±65504); use --dtype float32")
    assert not list(out.rglob("*.npy"))
    code, _, err = invoke("extract-features", video, "-o", out, "-m", large, *FAST, "--resume")  # float32 holds them
    assert code == 0, err
    assert np.isfinite(np.load(out / "x.avi.npy")).all()


def test_files_beside_the_videos_that_vswin_did_not_write_are_never_replaced_or_removed(tmp_path, tiny_checkpoint, invoke):
    # `-o` the video folder, where a photo/cloud export keeps its own `<video>.json` per video.
    # Was: a.avi's replaced by the sidecar, and bad.avi's removed (its video failed).
    videos = _videos(tmp_path / "videos", 1)
    (videos / "bad.avi").write_bytes(b"not a video")
    theirs = {videos / "v0.avi.json": b'{"title": "holiday"}\n', videos / "bad.avi.json": b'{"title": "broken"}\n'}
    for path, content in theirs.items():
        path.write_bytes(content)
    code, _, err = invoke("extract-features", videos, "-o", videos, "-m", tiny_checkpoint, *FAST)
    assert code == 1, err
    assert {path: path.read_bytes() for path in theirs} == theirs
    entries = {Path(e["path"]).name: e for e in map(json.loads, (videos / "index.jsonl").read_text().splitlines())}
    assert entries["v0.avi"]["status"] == "error"
    assert entries["v0.avi"]["error"] == (f"{videos / 'v0.avi.json'} is in the way of its features: vswin did not write "
                                          "that file; move it away or give another -o folder")
    assert not (videos / "v0.avi.npy").exists()
    # Moved away, the video is done; a later failure of that video removes vswin's own files only.
    (videos / "v0.avi.json").unlink()
    code, _, err = invoke("extract-features", videos, "-o", videos, "-m", tiny_checkpoint, *FAST, "--resume")
    assert code == 1 and (videos / "v0.avi.npy").is_file() and json.loads((videos / "v0.avi.json").read_text())["shape"] == [128]


def test_a_features_file_made_read_only_fails_its_video_and_stays(tmp_path, tiny_checkpoint, invoke):
    # Was: replaced by a rename and made writable again.
    videos = _videos(tmp_path / "videos", 2)
    out = tmp_path / "feats"
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST)
    assert code == 0, err
    kept = out / "v0.avi.npy"
    before = kept.read_bytes()
    kept.chmod(0o444)
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *FAST, "--per-clip")
    assert code == 1 and err.splitlines()[-1] == f"1 ok, 1 failed; results in {out}", err
    assert kept.read_bytes() == before and np.load(out / "v1.avi.npy").shape == (2, 128)
    entries = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    error = [e for e in entries if Path(e["path"]).name == "v0.avi"][-1]["error"]
    assert error == f"{kept}, which would hold its features, is read-only; make it writable (chmod u+w) or give another -o folder"


def test_videos_inside_the_output_folder_are_not_left_out(tmp_path, tiny_checkpoint, invoke):
    # `videos/ -r -o videos/train`: was "1 ok, 0 failed", train/b.avi never named anywhere.
    videos = _videos(tmp_path / "videos", 1)
    (videos / "train").mkdir()
    media.encode_cv2(videos / "train" / "b.avi", frames=40, size=(64, 48))
    out = videos / "train"
    code, _, err = invoke("extract-features", videos, "-r", "-o", out, "-m", tiny_checkpoint, *FAST)
    assert code == 0 and err.splitlines()[-1] == f"2 ok, 0 failed; results in {out}", err
    assert (out / "v0.avi.npy").is_file() and (out / "train" / "b.avi.npy").is_file()
    code, _, err = invoke("extract-features", videos, "-r", "-o", out, "-m", tiny_checkpoint, *FAST, "--resume")
    assert code == 0 and "skipped" not in err.replace("skipped 2 already done", ""), err


def test_a_run_without_resume_stopped_at_its_first_video_leaves_no_old_entry_vouching_for_it(tmp_path, tiny_checkpoint, invoke, monkeypatch):
    # Was: the old index (clip_len 4) was emptied only at the first new index line, after the new
    # .npy (clip_len 8) had replaced the old one; a --resume with clip_len 4 then kept it as done.
    import vswin_cli.features as features

    videos = _videos(tmp_path / "videos", 2)
    out = tmp_path / "feats"
    short = ("--clip-len", "4", "--clips", "2", "--crops", "1")
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *short)
    assert code == 0, err
    first = (out / "v0.avi.npy").read_bytes()
    real = features.write_npy_atomic

    def stopped_after_writing(path, array):
        real(path, array)
        raise KeyboardInterrupt

    monkeypatch.setattr(features, "write_npy_atomic", stopped_after_writing)
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, "--clip-len", "8", "--clips", "2", "--crops", "1")
    assert code == 130, err
    assert (out / "v0.avi.npy").read_bytes() != first  # replaced by the clip_len 8 features
    monkeypatch.setattr(features, "write_npy_atomic", real)
    code, _, err = invoke("extract-features", videos, "-o", out, "-m", tiny_checkpoint, *short, "--resume")
    assert code == 0 and err.splitlines()[-1] == f"2 ok, 0 failed; results in {out}", err  # nothing "already done"
    assert (out / "v0.avi.npy").read_bytes() == first


def test_an_output_folder_under_a_file_is_a_usage_error(tmp_path, tiny_checkpoint, invoke):
    # Was: exit 1 ("some videos failed") though no video was tried, as classify's -o gives exit 2.
    videos = _videos(tmp_path / "videos", 1)
    (tmp_path / "afile").write_text("x")
    code, _, err = invoke("extract-features", videos, "-o", tmp_path / "afile" / "feats", "-m", tiny_checkpoint, *FAST)
    assert code == 2
    assert err.splitlines() == [f"error: -o {tmp_path / 'afile' / 'feats'} cannot be made: {tmp_path / 'afile'} is a file, "
                                "not a folder; choose another output"]


def test_resume_redoes_files_that_a_run_into_an_inner_folder_replaced(tree, tiny_checkpoint, invoke, tmp_path):
    # Was: `-o feats/a --per-clip` after `-o feats -r` replaced feats/a/x.avi.npy with per-clip features;
    # `-o feats -r --resume` then kept them as done, though feats/index.jsonl says pooled, shape [C].
    out = tmp_path / "feats"
    code, _, err = invoke("extract-features", tree, "-r", "-o", out, "-m", tiny_checkpoint, *FAST)
    assert code == 1, err  # b/bad.avi
    pooled = np.load(out / "a" / "x.avi.npy")
    code, _, err = invoke("extract-features", tree / "a", "-o", out / "a", "-m", tiny_checkpoint, *FAST, "--per-clip")
    assert code == 0, err
    assert np.load(out / "a" / "x.avi.npy").ndim == 2
    code, _, err = invoke("extract-features", tree, "-r", "-o", out, "-m", tiny_checkpoint, *FAST, "--resume")
    assert code == 1, err
    np.testing.assert_array_equal(np.load(out / "a" / "x.avi.npy"), pooled)  # redone, not kept
    assert json.loads((out / "a" / "x.avi.json").read_text())["views"]["per_clip"] is False
