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
from conftest import SUBPROCESS_ENV

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
    assert err.splitlines() == [f"error: cannot write {out}: permission denied; choose an output in a folder you can write to"]


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
