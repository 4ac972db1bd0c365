"""Shared test set-up: two threads (as on CI), the repository root importable."""

from __future__ import annotations

import builtins
import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(2)
# CLI runs in subprocesses use the tiny test model: one thread is faster and does not fight the
# other processes of a busy machine.
SUBPROCESS_ENV = {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def run_vswin(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process, as a user would (`python -m vswin_cli` == `vswin`)."""
    full_env = {**os.environ, **SUBPROCESS_ENV, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vswin_cli", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def vswin():
    return run_vswin


def invoke_vswin(*args: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in this process through its real entry point: (exit code, stdout, stderr)."""
    from vswin_cli.cli import main

    monkeypatch.setattr(sys, "argv", ["vswin", *map(str, args)])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def invoke(monkeypatch, capsys):
    def run(*args: str) -> tuple[int, str, str]:
        return invoke_vswin(*args, monkeypatch=monkeypatch, capsys=capsys)

    return run


TINY_LABELS = [f"action {i}, with comma" for i in range(10)]


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small random Video Swin (10 classes, labelled) as native safetensors."""
    from vswin_cli.checkpoints import save_native
    from vswin_cli.model import SwinConfig, VideoSwin

    torch.manual_seed(0)
    model = VideoSwin(SwinConfig(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), window_size=(4, 7, 7), num_classes=10))
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.normal_(0, 0.2)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_native(model, path, labels=TINY_LABELS)
    return path


# --- read-only folders, also for root (whom file modes do not stop) ------------------------------


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch):
    """``read_only(folder)``: as after ``chmod -R a-w folder``; where modes do not bind (root), writes fail anyway."""
    folders: list[Path] = []

    def make(folder: Path) -> None:
        for path in [folder, *folder.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~0o222)
        folders.append(folder)
        probe = folder / ".probe"
        try:
            probe.touch()
        except PermissionError:
            return  # the modes are enough
        probe.unlink()
        refuse_writes_under(monkeypatch, [str(f) for f in folders])

    yield make
    for folder in folders:  # writable again, so that tmp_path can be cleaned up
        for path in [folder, *folder.rglob("*")]:
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)


def refuse_writes_under(monkeypatch: pytest.MonkeyPatch, folders: list[str]) -> None:
    """What the kernel does for a user without write permission, done for every way Python writes files."""

    def inside(path: object) -> bool:
        if isinstance(path, int):
            return False
        path = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
        return any(path == f or path.startswith(f + os.sep) for f in folders)

    def refuse(path: object) -> None:
        if inside(path):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))  # type: ignore[arg-type]

    def guard(function, *path_args: int):
        def guarded(*args, **kwargs):
            for index in path_args:
                refuse(args[index])
            return function(*args, **kwargs)

        return guarded

    real_open, real_os_open = builtins.open, os.open

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(os, "open", os_open)
    for name in ("mkdir", "unlink", "remove", "rmdir", "utime"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), 0))
    for name in ("replace", "rename", "link"):
        monkeypatch.setattr(os, name, guard(getattr(os, name), 0, 1))
    monkeypatch.setattr(os, "symlink", guard(os.symlink, 1))


@pytest.fixture
def opencv_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files decoded by OpenCV, as those PyAV cannot open are: its workarounds stay tested."""
    from vswin_cli import video

    monkeypatch.setattr(video, "open_pyav", lambda path, capture, threads=0: None)


def refuse_listing(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make discovery's os.scandir refuse ``folder`` as a folder without read permission would
    (as root, permissions do not stop listing, so the refusal is simulated)."""
    import vswin_cli.inputs as inputs

    real_scandir = os.scandir

    def scandir(path):
        if os.fspath(path) == str(folder):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(inputs.os, "scandir", scandir)
