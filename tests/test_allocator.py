"""The process keeps freed memory (vswin_cli/allocator.py): a freed large buffer is reused
without page faults once an Engine exists, and the user's own malloc settings win.

Each case runs in a fresh interpreter: malloc settings are process-wide.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's malloc settings only"
)

# Allocates and frees a 100 MB tensor (above glibc's largest mmap threshold) three times after
# a first time, and prints whether the setting took and the page faults of the three.
SCRIPT = """
import resource, sys, torch
from vswin_cli import allocator, engine, model
if sys.argv[1] == "engine":
    engine.Engine(model.VideoSwin(model.SwinConfig(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), num_classes=2)))
elif sys.argv[1] == "call":
    allocator.keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.ones(25 * 2**20).sum()
before = faults()
for _ in range(3):
    torch.ones(25 * 2**20).sum()
print(allocator._applied, faults() - before)
"""


def run(mode: str, **env: str) -> tuple[str, int]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    full_env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", **env)
    result = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=full_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    applied, faults = result.stdout.split()
    return applied, int(faults)


def test_an_engine_makes_freed_buffers_reusable_without_page_faults():
    applied, untouched = run("none")
    assert applied == "None" and untouched > 20000  # 3 x 100 MB mapped and faulted in again
    applied, tuned = run("engine")
    assert applied == "True" and tuned < 1000


@pytest.mark.parametrize("env", [{"VSWIN_KEEP_MEMORY": "0"}, {"MALLOC_ARENA_MAX": "2", "MALLOC_TRIM_THRESHOLD_": "1000000"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"}])
def test_the_users_own_malloc_settings_are_left_alone(env):
    applied, _ = run("call", **env)
    assert applied == "False"
