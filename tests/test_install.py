"""A real (non-editable) install finds weights.toml and the kernel source inside the wheel: `vswin models` lists every entry."""

from __future__ import annotations

import importlib.util
import json
import os
import site
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

from vswin_cli.registry import WEIGHTS_TOML_ENV

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_pip_install_then_vswin_models_lists_every_entry(tmp_path: Path) -> None:
    # Slow-ish (~5 s). The venv sees this interpreter's packages (torch & co.) through a .pth file, which
    # (unlike --system-site-packages) also works when the tests themselves run in a venv, and does not
    # process that site's own .pth files, so an editable vswin_cli there cannot shadow the installed one.
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    target_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    outer = [
        p
        for p in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
        if os.path.isdir(p)
    ]
    Path(target_site, "_outer_site.pth").write_text("\n".join(sorted(outer)) + "\n")

    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", WEIGHTS_TOML_ENV)}
    environment["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # Build with the hatchling already here when there is one (offline, fast); else pip fetches it.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("hatchling") else []
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            *isolation,
            "-q",
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=180,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def installed_path(expression: str) -> Path:
        """A path the installed package reports, evaluated by the venv's Python away from the repository."""
        result = subprocess.run(
            [str(python), "-c", f"import vswin_cli.registry, vswin_cli.attention_kernel; print({expression})"],
            capture_output=True,
            text=True,
            env=environment,
            cwd=outside,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return Path(result.stdout.strip())

    shipped = installed_path("vswin_cli.registry.weights_toml_path()")
    assert shipped.is_relative_to(env_dir) and shipped.name == "weights.toml"
    assert shipped.read_bytes() == (REPO_ROOT / "weights.toml").read_bytes()

    # The attention kernel's C source ships too (it is compiled on the user's machine).
    source = installed_path("vswin_cli.attention_kernel.SOURCE")
    assert source.is_relative_to(env_dir)
    assert source.read_bytes() == (REPO_ROOT / "vswin_cli" / "kernels" / "window_attention.c").read_bytes()

    environment["HF_HOME"] = str(tmp_path / "hf")
    listed = subprocess.run(
        [str(env_dir / "bin" / "vswin"), "models", "--format", "json"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=outside,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    expected = list(tomllib.loads((REPO_ROOT / "weights.toml").read_text())["models"])
    assert [row["name"] for row in json.loads(listed.stdout)] == expected
    assert all(row["cached"] is False for row in json.loads(listed.stdout))
