"""Which files a run covers, in which order."""

from __future__ import annotations

import os

import pytest

from vswin_cli.errors import VswinError
from vswin_cli.inputs import discover, looks_like_video

MP4_HEAD = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 32
MKV_HEAD = b"\x1a\x45\xdf\xa3" + b"\x00" * 32


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "videos"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "b.mp4").write_bytes(MP4_HEAD)
    (root / "a clip é.mkv").write_bytes(MKV_HEAD)
    (root / "no_extension").write_bytes(MP4_HEAD)  # a video known by its content alone
    (root / "notes.txt").write_text("not a video")
    (root / "broken.avi").write_bytes(b"garbage")  # a video by name: tried, gets an error record
    (root / "sub" / "c.webm").write_bytes(MKV_HEAD)
    (root / "sub" / "deeper" / "d.mp4").write_bytes(MP4_HEAD)
    os.symlink(root / "b.mp4", root / "link_to_b.mp4")
    os.symlink(root, root / "sub" / "loop")  # a cycle must not loop forever
    return root


def names(found, root):
    return [v.path.relative_to(root).as_posix() for v in found.videos]


def test_folder_lists_videos_by_extension_or_content_in_stable_order(tree):
    found = discover([tree])
    # The symlink to b.mp4 is the same file as b.mp4: listed once.
    assert names(found, tree) == ["a clip é.mkv", "b.mp4", "broken.avi", "no_extension"]
    assert found.skipped_files == 1 and found.skipped_folders == 1


def test_recursive_descends_and_survives_link_cycles(tree):
    found = discover([tree], recursive=True)
    assert names(found, tree) == ["a clip é.mkv", "b.mp4", "broken.avi", "no_extension", "sub/c.webm", "sub/deeper/d.mp4"]
    assert all(v.root == tree for v in found.videos)


def test_a_file_given_directly_is_always_tried(tree):
    found = discover([tree / "notes.txt"])
    assert [v.path for v in found.videos] == [tree / "notes.txt"]
    assert found.videos[0].relative.as_posix() == "notes.txt"


def test_a_folder_named_like_a_video_is_listed_when_given(tree):
    # Was one error record ("is a directory, not a video file"), its videos never classified.
    trip = tree / "holidays" / "trip.mp4"
    trip.mkdir(parents=True)
    (trip / "one.mp4").write_bytes(MP4_HEAD)
    found = discover([trip])
    assert [v.path for v in found.videos] == [trip / "one.mp4"] and found.videos[0].root == trip
    assert names(discover([tree / "holidays"], recursive=True), tree / "holidays") == ["trip.mp4/one.mp4"]


def test_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(VswinError, match="no such file or folder"):
        discover([tmp_path / "missing.mp4"])


def test_signatures():
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        for head, expected in [(MP4_HEAD, True), (MKV_HEAD, True), (b"RIFF\x00\x00\x00\x00AVI LIST", True), (b"GIF89a", True), (b"\x89PNG\r\n", False), (b"hello", False)]:
            p = Path(d) / "f"
            p.write_bytes(head)
            assert looks_like_video(p) is expected, head


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX named pipes")
def test_a_named_pipe_in_a_folder_is_skipped_without_waiting(tree):
    # Was: sniffing its first bytes opened it, which waits for a writer forever.
    import threading

    os.mkfifo(tree / "pipe")
    result = []
    worker = threading.Thread(target=lambda: result.append(discover([tree])), daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert result, "discovery blocked on a named pipe"
    assert names(result[0], tree) == ["a clip é.mkv", "b.mp4", "broken.avi", "no_extension"]
    assert result[0].skipped_files == 2  # notes.txt and the pipe


def test_a_tree_deeper_than_pythons_recursion_limit_is_walked(tmp_path):
    # Was: RecursionError past about 1000 levels.
    import sys

    import inspect

    folder = deepest = tmp_path / "top"
    folder.mkdir()
    for _ in range(250):
        deepest = deepest / "d"
        deepest.mkdir()
    (deepest / "v.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom")
    (folder / "a.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack()) + 100)  # a tree deeper than the limit, without a tree of 1000 folders
    try:
        found = discover([folder], recursive=True)
    finally:
        sys.setrecursionlimit(limit)
    assert [v.path for v in found.videos] == [folder / "a.mp4", deepest / "v.mp4"]


def test_a_folder_that_cannot_be_listed_is_named(tmp_path, monkeypatch, capsys):
    # Was: with -r, skipped without a word (exit 0, its videos missing); as root, permissions do not
    # stop listing, so the refusal is simulated.
    from conftest import refuse_listing

    locked = tmp_path / "videos" / "locked"
    locked.mkdir(parents=True)
    (tmp_path / "videos" / "a.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom")
    refuse_listing(monkeypatch, locked)
    found = discover([tmp_path / "videos"], recursive=True)
    assert [v.path.name for v in found.videos] == ["a.mp4"] and found.unlisted_folders == [(locked, "Permission denied")]
    from vswin_cli.cli._run import find_inputs

    find_inputs([tmp_path / "videos"], recursive=True)
    assert capsys.readouterr().err == f"warning: could not list {locked} (Permission denied), so the videos in it are left out\n"


def test_a_file_gone_between_listing_and_looking_is_left_out(tmp_path, monkeypatch):
    # Was: a file removed just after the folder was listed (another run's temporary, lock or journal
    # file) failed os.access, was taken for an unreadable video, and cost the run an error record and exit 1.
    (tmp_path / "a.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom")
    (tmp_path / "out.csv.partial.jsonl").write_text("")
    os.symlink(tmp_path / "nowhere.mp4", tmp_path / "dangling.mp4")
    real_scandir = os.scandir

    def listed_then_removed(folder):
        entries = list(real_scandir(folder))
        (tmp_path / "out.csv.partial.jsonl").unlink()
        return iter(entries)

    monkeypatch.setattr("vswin_cli.inputs.os.scandir", listed_then_removed)
    found = discover([tmp_path])
    assert [v.path.name for v in found.videos] == ["a.mp4", "dangling.mp4"]  # a dangling link still gets its error record
    assert found.skipped_files == 0


def test_a_file_gone_while_it_is_looked_at_is_left_out(tmp_path, monkeypatch):
    # Was: gone between the listing's first look and the readability test, a file was taken for an
    # unreadable video (a record of error, exit 1): 7 in 5,510 listings beside another run's renames.
    (tmp_path / "a.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom")
    going = tmp_path / ".v5.mp4.npy.18476cad.tmp"
    going.write_bytes(b"\x93NUMPY")
    real_access = os.access

    def gone_meanwhile(path, mode):
        if os.fspath(path) == str(going):
            going.unlink()
        return real_access(path, mode)

    monkeypatch.setattr("vswin_cli.inputs.os.access", gone_meanwhile)
    assert [v.path.name for v in discover([tmp_path]).videos] == ["a.mp4"]
