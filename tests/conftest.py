"""Shared test set-up: two threads (as on CI), the repository root importable."""

from __future__ import annotations

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
