"""Downloads, cache and verification, against a local server that answers like the Hub and a release URL.

The real download code runs: huggingface_hub for Hub files, vswin's own HTTP client for release URLs.
The registry comes from VSWIN_WEIGHTS_TOML (a test weights.toml whose URLs point at 127.0.0.1).
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path

import huggingface_hub.constants  # noqa: F401  (its paths are fixed at import: import it before any test moves HF_HOME)
import pytest
import torch
from hub_server import FakeHub, Fault

from vswin_cli.errors import VswinError
from vswin_cli.hub import cache_state, download_model, is_cached, resolve_checkpoint
from vswin_cli.protocol import KINETICS
from vswin_cli.registry import load_labels
from vswin_cli.url_cache import url_cache_path


def checkpoint_bytes(seed: int) -> bytes:
    """A small torch.save'd state dict (about 200 kB), different per seed."""
    generator = torch.Generator().manual_seed(seed)
    buffer = io.BytesIO()
    torch.save({"state_dict": {"cls_head.fc_cls.weight": torch.randn(400, 128, generator=generator)}}, buffer)
    return buffer.getvalue()


WEIGHTS = checkpoint_bytes(1)
OTHER = checkpoint_bytes(2)
assert len(WEIGHTS) == len(OTHER)  # same size, different bytes: only a hash can tell them apart


def safetensors_bytes(values: int) -> bytes:
    """A safetensors file of one float32 tensor: 8-byte header length, JSON header, data."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [values], "data_offsets": [0, 4 * values]}}).encode()
    data = (bytes(range(256)) * (values // 64 + 1))[: 4 * values]
    return len(header).to_bytes(8, "little") + header + data


SAFETENSORS = safetensors_bytes(50_000)
# A legacy torch.save pickle opens with 0x80 and has no end marker: only a size can tell it was cut short.
PICKLE = b"\x80\x02" + bytes(range(256)) * 800


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


ARCH = (
    "{ embed_dim = 96, depths = [2, 2, 6, 2], num_heads = [3, 6, 12, 24], "
    "window_size = [8, 7, 7], patch_size = [2, 4, 4] }"
)


def entry(name: str, source: str, sha: str = "", prefix: str = "", filename: str = "w.pth", size: int = 0) -> str:
    return (
        f'[models.{name}]\nfilename = "{filename}"\nlayout = "official"\narch = {ARCH}\nlabel_set = "kinetics400"\n'
        f'num_classes = 400\nprotocol = {{ sampling = "clips" }}\nsha256 = "{sha}"\nsha256_prefix = "{prefix}"\n'
        f"size = {size}\n[[models.{name}.sources]]\n{source}\n"
    )


@pytest.fixture
def hub():
    with FakeHub() as server:
        yield server


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> Path:
    """An empty cache (HF_HOME), the Hub endpoint at the local server, network on."""
    home = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("VSWIN_DOWNLOAD_TIMEOUT", "5")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(name, raising=False)
    return home


def use_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *entries: str) -> None:
    path = tmp_path / "weights.toml"
    path.write_text("\n".join(entries))
    monkeypatch.setenv("VSWIN_WEIGHTS_TOML", str(path))


@pytest.fixture
def url_model(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> str:
    """Registry model `m`: a release URL with its full sha256 in weights.toml."""
    url = hub.add_file("w.pth", WEIGHTS)
    use_registry(tmp_path, monkeypatch, entry("m", f'url = "{url}"', sha=sha256(WEIGHTS)))
    return url


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def loadable_files(root: Path) -> list[str]:
    # What could be loaded later: anything but partial downloads, records, locks and cache tags.
    ignored = (".incomplete", ".verified.json", ".lock", ".json", "CACHEDIR.TAG")
    return [f for f in files_under(root) if not f.endswith(ignored)]


# ----------------------------------------------------------------------------- release URLs


def test_first_download_is_verified_and_cached(url_model: str, env: Path, hub: FakeHub) -> None:
    checkpoint = resolve_checkpoint("m")
    assert checkpoint.path == url_cache_path(url_model, "w.pth")
    assert checkpoint.path.is_relative_to(env / "vswin" / "urls")
    assert checkpoint.path.read_bytes() == WEIGHTS
    assert checkpoint.sha256 == sha256(WEIGHTS)
    assert checkpoint.name == "m" and checkpoint.spec is not None and checkpoint.protocol == KINETICS
    assert checkpoint.labels == load_labels("kinetics400")
    assert torch.load(checkpoint.path, weights_only=True)["state_dict"]["cls_head.fc_cls.weight"].shape == (400, 128)
    assert loadable_files(env) == [f"vswin/urls/{checkpoint.path.parent.name}/w.pth"]
    record = json.loads(checkpoint.path.with_name("w.pth.verified.json").read_text())
    assert record["sha256"] == sha256(WEIGHTS) and record["size"] == len(WEIGHTS)
    assert is_cached("m")


def test_cached_copy_is_used_with_the_server_stopped(url_model: str, hub: FakeHub) -> None:
    first = resolve_checkpoint("m").path
    hub.stop()
    hub.log.clear()
    again = resolve_checkpoint("m")
    assert again.path == first and again.path.read_bytes() == WEIGHTS and hub.log == []


def test_offline_with_an_empty_cache_says_what_to_do(url_model: str, env: Path, hub: FakeHub, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("m")
    message = str(caught.value)
    assert "'m'" in message and str(url_cache_path(url_model, "w.pth")) in message
    assert "vswin download m" in message and "-m PATH" in message and "HF_HUB_OFFLINE" in message
    assert "\n" not in message and caught.value.exit_code == 2
    assert hub.log == []  # offline means no request at all


def test_without_a_model_the_registry_default_is_used(env: Path, tmp_path, monkeypatch, hub: FakeHub) -> None:
    # weights.toml's `default` decides, for the API and for both commands (not a name in the code).
    first, second = hub.add_file("first.pth", WEIGHTS), hub.add_file("second.pth", OTHER)
    use_registry(tmp_path, monkeypatch, 'default = "second"',
                 entry("first", f'url = "{first}"', filename="first.pth"), entry("second", f'url = "{second}"', filename="second.pth"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import vswin_cli
    from tests.conftest import run_vswin

    with pytest.raises(VswinError, match="'second'"):
        vswin_cli.load_model()
    with pytest.raises(VswinError, match="'second'"):
        vswin_cli.classify([tmp_path])
    video = tmp_path / "v.avi"
    video.write_bytes(b"RIFF")
    for command in (["classify", video], ["extract-features", video, "-o", tmp_path / "feats"]):
        result = run_vswin(*command, env={"VSWIN_WEIGHTS_TOML": os.environ["VSWIN_WEIGHTS_TOML"], "HF_HOME": str(env), "HF_HUB_OFFLINE": "1"})
        assert result.returncode == 2 and "'second'" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert hub.log == []


def test_a_file_that_is_another_model_is_not_run_under_the_registry_name(env: Path, tmp_path, monkeypatch, hub: FakeHub) -> None:
    # The official files publish no hash: a source that serves another model (or a file put in the
    # cache by hand) ran under the name, e.g. Swin-T as "swin-s-k400", with no word said.
    from vswin_cli import load_model
    from vswin_cli.checkpoints import native_to_official
    from vswin_cli.model import SwinConfig, VideoSwin

    torch.manual_seed(0)
    tiny = VideoSwin(SwinConfig(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2), window_size=(4, 7, 7), num_classes=400))
    buffer = io.BytesIO()
    torch.save({"state_dict": native_to_official(tiny.state_dict())}, buffer)
    url = hub.add_file("tiny.pth", buffer.getvalue())
    tiny_arch = "{ embed_dim = 16, depths = [1, 1, 2, 1], num_heads = [1, 1, 2, 2], window_size = [4, 7, 7], patch_size = [2, 4, 4] }"
    use_registry(tmp_path, monkeypatch, entry("swin", f'url = "{url}"', filename="tiny.pth"),
                 entry("tiny", f'url = "{url}"', filename="tiny.pth").replace(ARCH, tiny_arch))
    with pytest.raises(VswinError, match=r"is not swin's checkpoint: it is C16 depths 1-1-2-1 .*weights.toml gives C96 depths 2-2-6-2") as caught:
        load_model("swin")
    assert "vswin download swin" in str(caught.value) and "\n" not in str(caught.value)
    assert load_model("tiny").config == tiny.config


def test_offline_uses_the_cache(url_model: str, hub: FakeHub, monkeypatch) -> None:
    path = download_model("m")
    hub.log.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_checkpoint("m").path == path and hub.log == []


def test_no_network_and_nothing_cached_names_model_cache_and_ways_out(url_model: str, hub: FakeHub) -> None:
    hub.stop()
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("m")
    message = str(caught.value)
    assert "'m'" in message and "cannot reach" in message and "vswin download m" in message and "-m PATH" in message


@pytest.mark.parametrize("status", [404, 500])
def test_http_errors_are_one_line(url_model: str, env: Path, hub: FakeHub, status: int) -> None:
    hub.inject("/files/w.pth", Fault(status=status))
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("m")
    message = str(caught.value)
    assert f"HTTP {status}" in message and "'m'" in message and "\n" not in message
    assert loadable_files(env) == []


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "1e400", "abc"])
def test_a_bad_download_timeout_is_one_line_before_any_request(url_model: str, env: Path, hub: FakeHub, monkeypatch, value: str) -> None:
    # Was: a traceback (ValueError, OverflowError from the socket), or "abc" silently taken as 30.
    monkeypatch.setenv("VSWIN_DOWNLOAD_TIMEOUT", value)
    hub.log.clear()
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("m")
    assert str(caught.value) == f"VSWIN_DOWNLOAD_TIMEOUT={value} is not a positive number of seconds (at most 1e9); unset it or set e.g. 60"
    assert caught.value.exit_code == 2 and hub.log == [] and loadable_files(env) == []


def test_hash_mismatch_is_refused_and_nothing_loadable_is_left(url_model: str, env: Path, hub: FakeHub) -> None:
    hub.inject("/files/w.pth", Fault(body=OTHER))
    with pytest.raises(VswinError, match="does not match") as caught:
        resolve_checkpoint("m")
    assert sha256(OTHER)[:16] in str(caught.value)
    assert loadable_files(env) == [] and not any(f.endswith(".incomplete") for f in files_under(env))
    assert not is_cached("m")
    # The next attempt gets the right bytes and succeeds.
    assert resolve_checkpoint("m").path.read_bytes() == WEIGHTS


def test_published_hash_prefix_is_checked(env: Path, tmp_path, monkeypatch, hub: FakeHub) -> None:
    url = hub.add_file("swin3d_t-00000000.pth", WEIGHTS)
    use_registry(
        tmp_path, monkeypatch, entry("tv", f'url = "{url}"', prefix=sha256(OTHER)[:8], filename="swin3d_t.pth")
    )
    with pytest.raises(VswinError, match=f"sha256 starting {sha256(OTHER)[:8]}"):
        resolve_checkpoint("tv")
    assert loadable_files(env) == []
    use_registry(
        tmp_path, monkeypatch, entry("tv", f'url = "{url}"', prefix=sha256(WEIGHTS)[:8], filename="swin3d_t.pth")
    )
    assert resolve_checkpoint("tv").path.read_bytes() == WEIGHTS


def test_connection_cut_mid_file_resumes_with_a_range_request(url_model: str, hub: FakeHub) -> None:
    hub.inject("/files/w.pth", Fault(cut_after=50_000))
    checkpoint = resolve_checkpoint("m")
    assert checkpoint.path.read_bytes() == WEIGHTS
    assert [r.range for r in hub.requests_for("/files/w.pth")] == [None, "bytes=50000-"]


def test_interrupted_download_is_never_loaded_and_resumes_next_time(url_model: str, env: Path, hub: FakeHub) -> None:
    hub.inject("/files/w.pth", Fault(cut_after=50_000))
    hub.inject("/files/w.pth", Fault(status=500))  # the retry fails too
    with pytest.raises(VswinError, match="HTTP 500"):
        resolve_checkpoint("m")
    partial = url_cache_path(url_model, "w.pth").with_name("w.pth.incomplete")
    assert partial.stat().st_size == 50_000 and loadable_files(env) == [] and not is_cached("m")
    hub.log.clear()
    assert resolve_checkpoint("m").path.read_bytes() == WEIGHTS
    assert [r.range for r in hub.requests_for("/files/w.pth")] == ["bytes=50000-"]
    assert not partial.exists()


def test_corrupted_cached_file_is_caught_and_fetched_again(url_model: str, hub: FakeHub, capsys) -> None:
    path = resolve_checkpoint("m").path
    corrupted = bytearray(WEIGHTS)
    corrupted[1000] ^= 0xFF
    path.write_bytes(bytes(corrupted))  # same size, new mtime
    hub.log.clear()
    assert resolve_checkpoint("m").path.read_bytes() == WEIGHTS
    assert "corrupted" in capsys.readouterr().err
    assert len(hub.requests_for("/files/w.pth")) == 1


def test_corrupted_cached_file_offline_is_removed_and_reported(url_model: str, monkeypatch, capsys) -> None:
    path = resolve_checkpoint("m").path
    path.write_bytes(OTHER)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VswinError, match="vswin download m"):
        resolve_checkpoint("m")
    assert not path.exists() and "corrupted" in capsys.readouterr().err


def test_trust_on_first_download_without_a_published_hash(env: Path, tmp_path, monkeypatch, hub: FakeHub) -> None:
    url = hub.add_file("w.pth", WEIGHTS)
    use_registry(tmp_path, monkeypatch, entry("m", f'url = "{url}"'))
    path = resolve_checkpoint("m").path
    assert json.loads(path.with_name("w.pth.verified.json").read_text())["sha256"] == sha256(WEIGHTS)
    # The cached copy rots and the server now serves other bytes: the recorded hash refuses them.
    path.write_bytes(OTHER)
    hub.add_file("w.pth", OTHER)
    with pytest.raises(VswinError, match="does not match"):
        resolve_checkpoint("m")
    assert loadable_files(env) == []
    hub.add_file("w.pth", WEIGHTS)
    assert resolve_checkpoint("m").path.read_bytes() == WEIGHTS


# ----------------------------------------------------------------------------- Hub sources


def test_registry_hub_source_is_pinned_to_its_revision(env: Path, tmp_path, monkeypatch, hub: FakeHub) -> None:
    old = hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    hub.add_commit("me/swin", {"model.pth": OTHER})  # main moves on
    source = f'hub = "me/swin"\nfilename = "model.pth"\nrevision = "{old}"'
    use_registry(tmp_path, monkeypatch, entry("h", source, sha=sha256(WEIGHTS)))
    checkpoint = resolve_checkpoint("h")
    assert checkpoint.path.read_bytes() == WEIGHTS
    assert checkpoint.path == env / "hub" / "models--me--swin" / "snapshots" / old / "model.pth"
    assert is_cached("h")
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_checkpoint("h").path.read_bytes() == WEIGHTS


@pytest.mark.parametrize("hub_version", ["1.0 and later", "before 1.0"])
def test_a_registry_hub_file_that_is_not_there_is_one_line(env: Path, tmp_path, monkeypatch, hub: FakeHub, hub_version) -> None:
    # huggingface_hub before 1.0 has no RemoteEntryNotFoundError: naming it raised AttributeError
    # (a traceback) on every failed Hub download, while the success path worked.
    import huggingface_hub.errors

    if hub_version == "before 1.0":
        monkeypatch.delattr(huggingface_hub.errors, "RemoteEntryNotFoundError", raising=False)  # absent in 0.x itself
    commit = hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    use_registry(tmp_path, monkeypatch, entry("h", f'hub = "me/swin"\nfilename = "gone.pth"\nrevision = "{commit}"'))
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("h")
    assert str(caught.value) == f"hf://me/swin@{commit}/gone.pth: no file 'gone.pth' in me/swin at {commit}"


def test_hf_reference_revision_and_default_file(env: Path, hub: FakeHub) -> None:
    old = hub.add_commit("me/swin", {"model.pth": WEIGHTS, "README.md": b"hi"})
    hub.add_commit("me/swin", {"model.pth": OTHER, "README.md": b"hi"})
    assert resolve_checkpoint("hf://me/swin").path.read_bytes() == OTHER
    assert resolve_checkpoint(f"hf://me/swin@{old}").path.read_bytes() == WEIGHTS
    pinned = resolve_checkpoint(f"hf://me/swin@{old}/model.pth")
    assert pinned.path.read_bytes() == WEIGHTS and pinned.sha256 == sha256(WEIGHTS)
    assert pinned.labels is None and pinned.spec is None


def test_hf_reference_works_offline_from_the_cache(env: Path, hub: FakeHub, monkeypatch) -> None:
    hub.add_commit("me/swin", {"model.pth": WEIGHTS, "labels.txt": b"cat\ndog\n"})
    online = resolve_checkpoint("hf://me/swin")
    hub.stop()
    assert resolve_checkpoint("hf://me/swin").path == online.path  # unreachable Hub: the cache answers
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = resolve_checkpoint("hf://me/swin")
    assert offline.path == online.path and offline.labels == ["cat", "dog"]
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("hf://me/other")
    message = str(caught.value)
    assert "hf://me/other" in message and "models--me--other" in message and "-m PATH" in message


def test_hf_reference_picks_up_labels_and_protocol_from_config(env: Path, hub: FakeHub) -> None:
    config = {"id2label": {"1": "dog", "0": "cat"}, "protocol": {"num_clips": 2, "num_crops": 1}}
    hub.add_commit("me/swin", {"model.safetensors": WEIGHTS, "config.json": json.dumps(config).encode()})
    checkpoint = resolve_checkpoint("hf://me/swin")
    assert checkpoint.labels == ["cat", "dog"]
    assert checkpoint.protocol == KINETICS.with_overrides(num_clips=2, num_crops=1)
    assert checkpoint.config == config


def test_hf_config_nested_past_the_recursion_limit_is_one_line(env: Path, hub: FakeHub) -> None:
    # Was: a RecursionError traceback.
    hub.add_commit("me/deep", {"model.safetensors": WEIGHTS, "config.json": b"[" * 100_000 + b"]" * 100_000})
    with pytest.raises(VswinError, match="hf://me/deep: config.json is not valid JSON"):
        resolve_checkpoint("hf://me/deep")


def test_hf_labels_that_are_not_utf8_are_one_line(env: Path, hub: FakeHub) -> None:
    hub.add_commit("me/latin", {"model.safetensors": WEIGHTS, "labels.txt": "caf\u00e9\nna\u00efve\n".encode("latin-1")})
    with pytest.raises(VswinError) as info:
        resolve_checkpoint("hf://me/latin")
    assert str(info.value) == "hf://me/latin: its labels.txt is not UTF-8 text; run its checkpoint file with -m PATH --labels FILE"
    hub.add_commit("me/bom", {"model.safetensors": WEIGHTS, "labels.txt": "\ufeffcat\ndog\n".encode("utf-8")})
    assert resolve_checkpoint("hf://me/bom").labels == ["cat", "dog"]  # as Windows editors save UTF-8


@pytest.mark.parametrize("ref", ["hf://a b/c", "hf://me/re..po", "hf://me/" + "x" * 100])
def test_a_repository_name_the_hub_cannot_hold_is_a_bad_reference(env: Path, hub: FakeHub, ref: str) -> None:
    # Not "cannot reach the Hub ... run vswin download", which could never work.
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint(ref)
    message = str(caught.value)
    assert message.startswith(f"bad Hub reference '{ref}'") and "download" not in message and "\n" not in message
    assert hub.log == []


def test_hf_reference_with_several_checkpoints_asks_for_one(env: Path, hub: FakeHub) -> None:
    hub.add_commit("me/swin", {"a.pth": WEIGHTS, "b.safetensors": OTHER})
    with pytest.raises(VswinError, match="a.pth, b.safetensors"):
        resolve_checkpoint("hf://me/swin")
    assert resolve_checkpoint("hf://me/swin/b.safetensors").path.read_bytes() == OTHER


@pytest.mark.parametrize(
    "ref, complaint",
    [
        ("hf://me/nothere", "not found"),
        ("hf://me/swin@v9", "revision 'v9' not found"),
        ("hf://me/swin/x.pth", "no file 'x.pth'"),
    ],
)
def test_hub_404s_are_one_line(env: Path, hub: FakeHub, ref: str, complaint: str) -> None:
    hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    with pytest.raises(VswinError, match=complaint) as caught:
        resolve_checkpoint(ref)
    assert "\n" not in str(caught.value)


def test_hub_500_on_listing_is_one_line(env: Path, hub: FakeHub) -> None:
    hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    hub.inject("/api/models/me/swin/revision/main", Fault(status=500))
    with pytest.raises(VswinError, match="HTTP 500"):
        resolve_checkpoint("hf://me/swin")


def test_hub_connection_cut_mid_file_never_loads_a_partial_file(env: Path, hub: FakeHub) -> None:
    commit = hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    path = hub.resolve_path("me/swin", commit, "model.pth")
    hub.inject(path, Fault(cut_after=50_000))
    assert resolve_checkpoint("hf://me/swin").path.read_bytes() == WEIGHTS
    assert [r.method for r in hub.requests_for(path)].count("GET") == 2


def test_hub_bytes_that_do_not_match_the_etag_are_discarded(env: Path, hub: FakeHub) -> None:
    commit = hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    path = hub.resolve_path("me/swin", commit, "model.pth")
    hub.inject(path, Fault(body=OTHER, times=2))  # both the download and its one retry are wrong
    with pytest.raises(VswinError, match="does not match"):
        resolve_checkpoint(f"hf://me/swin@{commit}/model.pth")
    snapshot = env / "hub" / "models--me--swin" / "snapshots" / commit / "model.pth"
    blob = env / "hub" / "models--me--swin" / "blobs" / sha256(WEIGHTS)
    assert not snapshot.exists() and not blob.exists()
    assert resolve_checkpoint(f"hf://me/swin@{commit}/model.pth").path.read_bytes() == WEIGHTS


def test_registry_hash_is_checked_for_hub_files_too(env: Path, tmp_path, monkeypatch, hub: FakeHub) -> None:
    commit = hub.add_commit("me/swin", {"model.pth": OTHER})  # the Hub's ETag matches, the registry's hash does not
    source = f'hub = "me/swin"\nfilename = "model.pth"\nrevision = "{commit}"'
    use_registry(tmp_path, monkeypatch, entry("h", source, sha=sha256(WEIGHTS)))
    with pytest.raises(VswinError, match="does not match"):
        resolve_checkpoint("h")
    assert not (env / "hub" / "models--me--swin" / "snapshots" / commit / "model.pth").exists()
    assert not (env / "hub" / "models--me--swin" / "blobs" / sha256(OTHER)).exists()
    assert not is_cached("h")


def test_corrupted_hub_blob_is_caught_and_fetched_again(env: Path, hub: FakeHub, capsys) -> None:
    commit = hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    path = resolve_checkpoint(f"hf://me/swin@{commit}/model.pth").path
    blob = Path(os.path.realpath(path))
    blob.write_bytes(OTHER)
    assert resolve_checkpoint(f"hf://me/swin@{commit}/model.pth").path.read_bytes() == WEIGHTS
    assert "does not match" in capsys.readouterr().err


# ----------------------------------------------------------------------------- local paths and names


def test_local_paths_and_unknown_names(tmp_path: Path, env: Path, monkeypatch) -> None:
    monkeypatch.delenv("VSWIN_WEIGHTS_TOML", raising=False)
    local = tmp_path / "mine.pth"
    local.write_bytes(WEIGHTS)
    checkpoint = resolve_checkpoint(str(local))
    assert checkpoint.path == local and checkpoint.spec is None
    with pytest.raises(VswinError, match="no such checkpoint file"):
        resolve_checkpoint(str(tmp_path / "missing.pth"))
    with pytest.raises(VswinError, match="unknown model 'swin-t-k40'.*swin-t-k400"):
        resolve_checkpoint("swin-t-k40")


# ----------------------------------------------------------------------------- the CLI


def run_vswin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """The console script's main(), in this process: (exit code, stdout, stderr)."""
    from vswin_cli.cli import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["vswin", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_download_and_models(url_model: str, env: Path, tmp_path, monkeypatch, hub: FakeHub, capsys) -> None:
    def vswin(*args: str) -> tuple[int, str, str]:
        return run_vswin(capsys, monkeypatch, *args)

    missing = hub.add_file("gone.pth", b"")
    del hub.files["gone.pth"]
    use_registry(
        tmp_path,
        monkeypatch,
        entry("m", f'url = "{url_model}"', sha=sha256(WEIGHTS)),
        entry("gone", f'url = "{missing}"', filename="gone.pth"),
    )

    code, out, err = vswin("models", "--format", "json")
    assert code == 0, err
    assert [(row["name"], row["cached"]) for row in json.loads(out)] == [("m", False), ("gone", False)]

    code, out, err = vswin("download", "m", "nope")
    assert code == 2 and "unknown model 'nope'" in err and hub.requests_for("/files/w.pth") == []

    code, out, err = vswin("download")
    assert code == 2 and "--all" in err

    code, out, err = vswin("download", "m")
    assert code == 0, err
    assert out.splitlines() == [f"ok  m  {url_cache_path(url_model, 'w.pth')}  sha256 {sha256(WEIGHTS)[:16]}..."]

    code, out, err = vswin("models", "--format", "json")
    assert [(row["name"], row["cached"]) for row in json.loads(out)] == [("m", True), ("gone", False)]
    code, out, err = vswin("models")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert code == 0 and rows["m"][-1] == "yes" and rows["gone"][-1] == "no"

    code, out, err = vswin("download", "--all")
    assert code == 1
    assert out.startswith("ok  m  ") and "error: gone:" in err and "HTTP 404" in err


# ----------------------------------------------------------------------------- read-only caches


def copy_like_cp_r(source: Path, target: Path) -> None:
    """`cp -r`: links stay links, files get new modification times."""

    def copy(src: str, dst: str) -> None:
        shutil.copy(src, dst)
        later = os.stat(src).st_mtime_ns + 10**9  # a whole second: some file systems keep no finer times
        os.utime(dst, ns=(later, later))

    shutil.copytree(source, target, symlinks=True, copy_function=copy)


@pytest.fixture
def two_models(url_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: FakeHub) -> str:
    """Registry models `m` (a release URL) and `h` (a Hub file pinned to a commit); returns that commit."""
    commit = hub.add_commit("me/swin", {"model.pth": WEIGHTS, "labels.txt": b"cat\ndog\n"})
    source = f'hub = "me/swin"\nfilename = "model.pth"\nrevision = "{commit}"'
    use_registry(
        tmp_path,
        monkeypatch,
        entry("m", f'url = "{url_model}"', sha=sha256(WEIGHTS)),
        entry("h", source, sha=sha256(WEIGHTS)),
    )
    return commit


def test_copied_read_only_cache_is_used_offline_and_online(
    two_models: str, env: Path, tmp_path, monkeypatch, hub: FakeHub, capsys, read_only
) -> None:
    for name in ("m", "h", "hf://me/swin"):
        resolve_checkpoint(name)
    copy = tmp_path / "hfcopy"
    copy_like_cp_r(env, copy)
    read_only(copy)
    before = files_under(copy)
    monkeypatch.setenv("HF_HOME", str(copy))
    hub.log.clear()

    # New mtimes: the records no longer match, so the files count as unverified until hashed.
    code, out, err = run_vswin(capsys, monkeypatch, "models", "--format", "json")
    assert code == 0, err
    assert [(r["name"], r["cached"], r["cache_state"]) for r in json.loads(out)] == [
        ("m", True, "unverified"),
        ("h", True, "unverified"),
    ]
    code, out, err = run_vswin(capsys, monkeypatch, "models")
    rows = {line.split()[0]: line.rstrip() for line in out.splitlines()[1:]}
    assert code == 0 and rows["m"].endswith("yes (unverified)") and rows["h"].endswith("yes (unverified)")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("m", "h"):
        checkpoint = resolve_checkpoint(name)
        assert checkpoint.path.is_relative_to(copy) and checkpoint.path.read_bytes() == WEIGHTS
        assert checkpoint.sha256 == sha256(WEIGHTS)
    offline = resolve_checkpoint("hf://me/swin")
    assert offline.path.is_relative_to(copy) and offline.labels == ["cat", "dog"]

    monkeypatch.delenv("HF_HUB_OFFLINE")
    code, out, err = run_vswin(capsys, monkeypatch, "download", "m", "h", "hf://me/swin")
    assert code == 0 and err == ""
    assert [line.split()[:2] for line in out.splitlines()] == [["ok", "m"], ["ok", "h"], ["ok", "hf://me/swin"]]
    assert hub.requests_for("/files/w.pth") == [] and not any("resolve" in r.path for r in hub.log)
    assert files_under(copy) == before  # nothing was written, not even a lock
    assert cache_state("m") == "unverified"


@pytest.mark.parametrize("name", ["m", "h", "hf://me/swin"])
def test_download_into_a_read_only_cache_is_one_line_saying_what_to_do(
    two_models: str, env: Path, monkeypatch, capsys, read_only, name: str
) -> None:
    env.mkdir()
    read_only(env)
    code, out, err = run_vswin(capsys, monkeypatch, "download", name)
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"the cache folder {env}" in err and "not writable" in err
    assert "make it writable or point HF_HOME at a writable folder" in err
    assert files_under(env) == []


def test_read_only_cache_that_does_not_exist_yet(url_model: str, env: Path, tmp_path, monkeypatch, read_only) -> None:
    home = tmp_path / "ro" / "hf"
    (tmp_path / "ro").mkdir()
    read_only(tmp_path / "ro")
    monkeypatch.setenv("HF_HOME", str(home))
    with pytest.raises(VswinError, match=f"cannot download m: the cache folder {home} is not writable") as caught:
        resolve_checkpoint("m")
    assert "\n" not in str(caught.value) and "HF_HOME" in str(caught.value)


@pytest.mark.parametrize("name", ["m", "h"])
def test_corrupted_copy_in_a_read_only_cache_is_refused_with_one_line(
    two_models: str, env: Path, tmp_path, monkeypatch, read_only, name: str
) -> None:
    path = resolve_checkpoint(name).path
    copy = tmp_path / "hfcopy"
    copy_like_cp_r(env, copy)
    copied = copy / path.relative_to(env)
    Path(os.path.realpath(copied)).write_bytes(OTHER)  # same size: only the hash can tell
    read_only(copy)
    monkeypatch.setenv("HF_HOME", str(copy))
    assert cache_state(name) == "unverified"
    with pytest.raises(VswinError, match="cannot be replaced") as caught:
        resolve_checkpoint(name)
    message = str(caught.value)
    assert str(copied) in message and f"the cache folder {copy}" in message and "make it writable" in message
    assert copied.read_bytes() == OTHER  # never loaded, and left where it was


def test_models_tells_verified_unverified_and_missing(two_models: str, env: Path) -> None:
    assert cache_state("m") == "missing"
    path = resolve_checkpoint("m").path
    assert cache_state("m") == "verified" and is_cached("m")
    later = path.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))
    assert cache_state("m") == "unverified" and not is_cached("m")
    resolve_checkpoint("m")  # hashed again and recorded
    assert cache_state("m") == "verified"
    path.write_bytes(WEIGHTS[:1000])  # another size: cannot be the verified file
    assert cache_state("m") == "missing"


# ----------------------------------------------------------------------------- what a demanding user runs into


def test_a_web_page_instead_of_the_checkpoint_is_never_trusted(
    env: Path, tmp_path, monkeypatch, hub: FakeHub
) -> None:
    # The official entries publish no hash: the first download is trusted. A proxy's login page or a
    # moved file's HTML answer (HTTP 200) must not become "the verified checkpoint" for good.
    url = hub.add_file("w.pth", b"\n  <!DOCTYPE html><html><body>Sign in to continue</body></html>\n")
    use_registry(tmp_path, monkeypatch, entry("m", f'url = "{url}"'))
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("m")
    message = str(caught.value)
    assert "web page" in message and url in message and "\n" not in message
    assert files_under(env / "vswin") == [f"urls/{url_cache_path(url, 'w.pth').parent.name}/.lock"]
    assert cache_state("m") == "missing"
    hub.add_file("w.pth", WEIGHTS)  # the network is fixed: the real file is accepted, not refused by a stale record
    assert resolve_checkpoint("m").path.read_bytes() == WEIGHTS


def test_a_checkpoint_cut_short_is_never_trusted(env: Path, tmp_path, monkeypatch, hub: FakeHub) -> None:
    # A proxy that drops the end but closes cleanly (its Content-Length says the short size): the
    # first download of an entry without a published hash must not record the torso as the file.
    url = hub.add_file("w.pth", WEIGHTS[:150_000])
    use_registry(tmp_path, monkeypatch, entry("m", f'url = "{url}"'))
    with pytest.raises(VswinError, match="cut-short zip archive"):
        resolve_checkpoint("m")
    assert loadable_files(env) == [] and cache_state("m") == "missing"
    hub.add_file("w.pth", WEIGHTS)
    assert resolve_checkpoint("m").path.read_bytes() == WEIGHTS


def test_safetensors_whose_header_length_starts_like_markup_is_still_a_checkpoint(
    env: Path, tmp_path, monkeypatch, hub: FakeHub
) -> None:
    # safetensors opens with its header's length as 8 little-endian bytes: 0x3c is '<', 0x7b is '{'.
    for length in (0x3C, 0x7B):
        header = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'.ljust(length)
        data = length.to_bytes(8, "little") + header + b"\0\0\0\0"
        url = hub.add_file(f"s{length}.safetensors", data)
        use_registry(tmp_path, monkeypatch, entry("s", f'url = "{url}"', filename=f"s{length}.safetensors"))
        assert resolve_checkpoint("s").path.read_bytes() == data


def test_hash_mismatch_against_weights_toml_points_at_weights_toml(
    url_model: str, env: Path, tmp_path, monkeypatch
) -> None:
    # A wrong sha256 in weights.toml: deleting a verification record (there is none) cannot help.
    use_registry(tmp_path, monkeypatch, entry("m", f'url = "{url_model}"', sha="0" * 64))
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("m")
    message = str(caught.value)
    assert "verified.json" not in message and str(tmp_path / "weights.toml") in message
    assert sha256(WEIGHTS)[:16] in message and "\n" not in message


@pytest.mark.parametrize("name", ["m", "h", "hf://me/swin"])
def test_a_cache_folder_that_is_a_file_is_one_line(two_models: str, env: Path, monkeypatch, capsys, name: str) -> None:
    env.parent.mkdir(parents=True, exist_ok=True)
    env.write_text("not a folder")
    code, out, err = run_vswin(capsys, monkeypatch, "download", name)
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"HF_HOME={env}" in err and "not a folder" in err and "could not be reached" not in err


@pytest.mark.parametrize("name", ["m", "h", "hf://me/swin"])
@pytest.mark.parametrize("where", ["loop", "long", "proc"])
def test_a_cache_folder_that_can_never_be_made_is_one_line(two_models: str, tmp_path, monkeypatch, capsys, name: str, where: str) -> None:
    # Was: an OSError traceback (ELOOP, ENAMETOOLONG, or ENOENT under /proc).
    if where == "proc" and not os.path.isdir("/proc/self"):
        pytest.skip("needs /proc")
    (tmp_path / "loop").symlink_to("loop")
    home = {"loop": tmp_path / "loop" / "hf", "long": tmp_path / ("x" * 300), "proc": Path("/proc/self")}[where]
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    code, out, err = run_vswin(capsys, monkeypatch, "download", name)
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "point HF_HOME at another folder" in err, err


@pytest.fixture
def disk_full(monkeypatch: pytest.MonkeyPatch):
    """``disk_full(folder, free[, code])``: files written under folder fail with ENOSPC (or ``code``: EFBIG for
    a file-size limit) once ``free`` bytes are used."""
    real_open = builtins.open

    class Full(io.RawIOBase):
        def __init__(self, file, name: str) -> None:
            self.file, self.name_ = file, name

        def writable(self) -> bool:
            return True

        def seekable(self) -> bool:  # huggingface_hub 0.x seeks in the file it downloads into
            return self.file.seekable()

        def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
            return self.file.seek(offset, whence)

        def tell(self) -> int:
            return self.file.tell()

        def write(self, data) -> int:
            room = min(state["free"], len(data))
            self.file.write(bytes(data[:room]))  # as a disk does: what fits is written, then the error
            state["free"] -= room
            if room < len(data):
                raise OSError(state["errno"], os.strerror(state["errno"]), self.name_)
            return room

        def close(self) -> None:
            self.file.close()
            super().close()

    state: dict = {}

    def open_(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if isinstance(file, int) or not any(c in mode for c in "wax+"):
            return handle
        if not os.path.abspath(os.fsdecode(file)).startswith(state["folder"] + os.sep):
            return handle
        if "b" in mode:
            return Full(handle, os.fsdecode(file))
        handle.close()  # text: the same file again, binary underneath, so that every byte is counted
        binary = Full(real_open(file, mode + "b"), os.fsdecode(file))
        return io.TextIOWrapper(binary, encoding=kwargs.get("encoding"))

    def make(folder: Path, free: int, code: int = errno.ENOSPC) -> dict:
        state.update(folder=str(folder), free=free, errno=code)
        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)
        return state  # state["free"] = ...: room again

    return make


@pytest.mark.parametrize("name", ["m", "h"])
def test_a_full_disk_says_so_and_keeps_what_arrived(
    two_models: str, env: Path, hub: FakeHub, monkeypatch, capsys, disk_full, name: str
) -> None:
    disk = disk_full(env, 50_000)
    code, out, err = run_vswin(capsys, monkeypatch, "download", name)
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "no space left" in err.lower() and "HF_HOME" in err and str(env) in err
    assert "kept breaking off" not in err and "machine with a network" not in err
    assert loadable_files(env) == [] and cache_state(name) == "missing"
    partial = url_cache_path(f"{hub.url}/files/w.pth", "w.pth.incomplete")
    # What the full disk held (less the few bytes that name the file's version beside it).
    arrived = partial.stat().st_size if name == "m" else 0
    disk["free"] = 1 << 30  # space freed: the same command succeeds
    hub.log.clear()
    assert resolve_checkpoint(name).path.read_bytes() == WEIGHTS
    if name == "m":  # release URLs resume from what the full disk held
        assert 49_000 < arrived <= 50_000
        assert [r.range for r in hub.requests_for("/files/w.pth")] == [f"bytes={arrived}-"]


def test_download_of_a_malformed_hub_reference_is_a_usage_error(
    url_model: str, hub: FakeHub, monkeypatch, capsys
) -> None:
    code, out, err = run_vswin(capsys, monkeypatch, "download", "m", "hf://me")
    assert code == 2 and out == "" and "bad Hub reference 'hf://me'" in err and len(err.splitlines()) == 1
    assert hub.log == []  # checked before anything is downloaded, as unknown names are


def test_a_failed_download_names_the_model_once(env: Path, hub: FakeHub, monkeypatch, capsys) -> None:
    # Was: "error: hf://me/swin/x.pth: hf://me/swin/x.pth: no file 'x.pth' ...".
    hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    code, out, err = run_vswin(capsys, monkeypatch, "download", "hf://me/swin/x.pth")
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: hf://me/swin/x.pth: no file 'x.pth' in me/swin")


@pytest.mark.parametrize("name", ["h", "hf://me/swin"])
def test_hf_endpoint_without_a_scheme_is_named(two_models: str, hub: FakeHub, monkeypatch, name: str) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub.url.removeprefix("http://"))
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint(name)
    message = str(caught.value)
    assert f"HF_ENDPOINT={hub.url.removeprefix('http://')}" in message and "http://" in message
    assert "vswin download" not in message


def test_a_download_waiting_for_another_process_says_so(
    url_model: str, env: Path, monkeypatch, capsys
) -> None:
    import threading

    from filelock import FileLock

    import vswin_cli.url_cache

    monkeypatch.setattr(vswin_cli.url_cache, "_LOCK_NOTICE_S", 0.05)
    folder = url_cache_path(url_model, "w.pth").parent
    folder.mkdir(parents=True)
    result: list = []
    with FileLock(str(folder / ".lock")):  # another process is downloading m
        thread = threading.Thread(target=lambda: result.append(resolve_checkpoint("m")))
        thread.start()
        thread.join(0.3)
        assert thread.is_alive() and result == []  # it waits, and says why
        assert f"waiting for another process that is downloading m into {folder}" in capsys.readouterr().err
    thread.join(5)
    assert result[0].path.read_bytes() == WEIGHTS


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch):
    """``unreadable(folder)``: as a folder of another user without the x bit: nothing inside can be looked at."""

    def make(folder: Path) -> None:
        inside = str(folder) + os.sep

        def refuse(function):
            def guarded(path, *args, **kwargs):
                if not isinstance(path, int) and os.path.abspath(os.fsdecode(path)).startswith(inside):
                    raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
                return function(path, *args, **kwargs)

            return guarded


        for module in (os, builtins, io):
            for name in ("stat", "lstat", "mkdir", "open"):
                if hasattr(module, name):
                    monkeypatch.setattr(module, name, refuse(getattr(module, name)))

    return make


@pytest.mark.parametrize("name", ["m", "h"])
def test_a_cache_that_cannot_be_read_is_one_line_and_models_still_lists(
    two_models: str, env: Path, monkeypatch, capsys, unreadable, name: str
) -> None:
    env.mkdir()
    unreadable(env)
    code, out, err = run_vswin(capsys, monkeypatch, "models", "--format", "json")
    assert code == 0 and "Traceback" not in err, err
    assert [(row["name"], row["cached"]) for row in json.loads(out)] == [("m", False), ("h", False)]
    code, out, err = run_vswin(capsys, monkeypatch, "download", name)
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"the cache folder {env}" in err and "Permission denied" in err and "HF_HOME" in err


# ----------------------------------------------------------------------------- servers that break off, stall or lie


@pytest.mark.parametrize(
    "fault",
    [Fault(cut_after=50_000, ignore_range=True, times=20), Fault(extra_length=100, times=20)],
    ids=["cut-with-range-ignored", "content-length-too-large"],
)
def test_a_download_that_gets_no_further_gives_up_after_a_few_attempts(
    url_model: str, env: Path, hub: FakeHub, fault: Fault
) -> None:
    # Was: requests without end. Each restart from byte 0 counted as progress; a Range past the
    # end of a file that announced more than it sent got 416, deleted the file and started over.
    hub.inject("/files/w.pth", fault)
    with pytest.raises(VswinError, match="kept breaking off") as caught:
        resolve_checkpoint("m")
    assert "\n" not in str(caught.value) and len(hub.requests_for("/files/w.pth")) <= 5
    # What it says is kept is there (a Range past the end is answered 416, which starts over from nothing).
    kept = re.search(r"bytes kept in (\S+);", str(caught.value))
    assert (Path(kept[1]).is_file() and Path(kept[1]).stat().st_size > 0) if kept else "nothing was kept" in str(caught.value)
    assert loadable_files(env) == [] and cache_state("m") == "missing"
    hub.faults.clear()
    assert resolve_checkpoint("m").path.read_bytes() == WEIGHTS


def test_bytes_that_arrived_before_a_stall_are_kept_and_resumed(url_model: str, hub: FakeHub, monkeypatch) -> None:
    # Was: lost in a 1 MiB read that the timeout interrupted; the retry started from byte 0.
    monkeypatch.setenv("VSWIN_DOWNLOAD_TIMEOUT", "0.3")
    hub.inject("/files/w.pth", Fault(cut_after=20_000, stall_s=1.0))
    assert resolve_checkpoint("m").path.read_bytes() == WEIGHTS
    assert [r.range for r in hub.requests_for("/files/w.pth")] == [None, "bytes=20000-"]


def test_a_body_shorter_than_the_size_in_weights_toml_is_refused(
    env: Path, tmp_path, monkeypatch, hub: FakeHub
) -> None:
    # A proxy that ends the body cleanly 1000 bytes early, with a Content-Length to match: was trusted
    # as the model (and recorded so) when weights.toml gives the size but no hash.
    url = hub.add_file("w.pt", PICKLE)
    use_registry(tmp_path, monkeypatch, entry("p", f'url = "{url}"', filename="w.pt", size=len(PICKLE)))
    hub.inject("/files/w.pt", Fault(body=PICKLE[:-1000]))
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("p")
    message = str(caught.value)
    assert f"announces {len(PICKLE) - 1000} bytes" in message and f"is {len(PICKLE)}" in message
    assert str(tmp_path / "weights.toml") in message and "\n" not in message
    assert files_under(env / "vswin") == [f"urls/{url_cache_path(url, 'w.pt').parent.name}/.lock"]
    assert cache_state("p") == "missing"
    assert resolve_checkpoint("p").path.read_bytes() == PICKLE


def test_a_body_without_length_that_ends_before_the_size_in_weights_toml_is_resumed(
    env: Path, tmp_path, monkeypatch, hub: FakeHub
) -> None:
    url = hub.add_file("w.pt", PICKLE)
    use_registry(tmp_path, monkeypatch, entry("p", f'url = "{url}"', filename="w.pt", size=len(PICKLE)))
    hub.inject("/files/w.pt", Fault(cut_after=100_000, no_length=True))
    assert resolve_checkpoint("p").path.read_bytes() == PICKLE
    assert [r.range for r in hub.requests_for("/files/w.pt")] == [None, "bytes=100000-"]


@pytest.mark.parametrize(
    "fault",
    [Fault(body=SAFETENSORS[:100_000]), Fault(cut_after=100_000, no_length=True)],
    ids=["short-content-length", "no-content-length"],
)
def test_a_safetensors_file_shorter_than_its_header_says_is_never_trusted(
    env: Path, tmp_path, monkeypatch, hub: FakeHub, fault: Fault
) -> None:
    # No size and no hash in weights.toml: the header's data offsets are all that can tell.
    url = hub.add_file("s.safetensors", SAFETENSORS)
    use_registry(tmp_path, monkeypatch, entry("s", f'url = "{url}"', filename="s.safetensors"))
    hub.inject("/files/s.safetensors", fault)
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("s")
    assert f"a cut-short safetensors file (100000 bytes, its header describes {len(SAFETENSORS)})" in str(caught.value)
    assert loadable_files(env) == [] and cache_state("s") == "missing"
    assert not any(f.endswith(".verified.json") for f in files_under(env))  # nothing to hold the good file to
    assert resolve_checkpoint("s").path.read_bytes() == SAFETENSORS


@pytest.mark.parametrize(
    "filename, data, size",
    [("w.pt", PICKLE, len(PICKLE)), ("s.safetensors", SAFETENSORS, 0)],
    ids=["size-in-weights-toml", "safetensors-header"],
)
def test_a_cut_short_copy_an_older_vswin_trusted_is_replaced(
    env: Path, tmp_path, monkeypatch, hub: FakeHub, filename: str, data: bytes, size: int
) -> None:
    # Was: used for good, its record matching size and mtime; a later good download never replaced it.
    url = hub.add_file(filename, data)
    use_registry(tmp_path, monkeypatch, entry("c", f'url = "{url}"', filename=filename, size=size))
    path = url_cache_path(url, filename)
    path.parent.mkdir(parents=True)
    path.write_bytes(data[:-5000])
    stat = path.stat()
    record = {"sha256": sha256(data[:-5000]), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    path.with_name(filename + ".verified.json").write_text(json.dumps(record))
    assert cache_state("c") == "missing"
    assert resolve_checkpoint("c").path.read_bytes() == data
    assert cache_state("c") == "verified"


def test_a_copy_trusted_before_weights_toml_pinned_its_hash_is_replaced(
    env: Path, tmp_path, monkeypatch, hub: FakeHub
) -> None:
    # Trust on first download took wrong bytes; a later weights.toml (a vswin upgrade) pins the hash.
    url = hub.add_file("w.pth", WEIGHTS)
    hub.inject("/files/w.pth", Fault(body=OTHER))
    use_registry(tmp_path, monkeypatch, entry("m", f'url = "{url}"'))
    assert resolve_checkpoint("m").path.read_bytes() == OTHER
    use_registry(tmp_path, monkeypatch, entry("m", f'url = "{url}"', sha=sha256(WEIGHTS)))
    assert cache_state("m") == "missing"
    assert resolve_checkpoint("m").path.read_bytes() == WEIGHTS
    assert cache_state("m") == "verified"


def test_entries_sharing_a_url_each_check_the_copy_against_their_own_hash(
    env: Path, tmp_path, monkeypatch, hub: FakeHub
) -> None:
    url = hub.add_file("w.pth", WEIGHTS)
    hub.inject("/files/w.pth", Fault(body=OTHER))
    loose, pinned = entry("loose", f'url = "{url}"'), entry("pinned", f'url = "{url}"', sha=sha256(WEIGHTS))
    use_registry(tmp_path, monkeypatch, loose, pinned)
    assert resolve_checkpoint("loose").path.read_bytes() == OTHER
    assert cache_state("pinned") == "missing"
    assert resolve_checkpoint("pinned").path.read_bytes() == WEIGHTS


def test_a_hub_copy_is_checked_against_a_hash_pinned_after_it_was_cached(
    env: Path, tmp_path, monkeypatch, hub: FakeHub
) -> None:
    commit = hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    source = f'hub = "me/swin"\nfilename = "model.pth"\nrevision = "{commit}"'
    use_registry(tmp_path, monkeypatch, entry("h", source))
    resolve_checkpoint("h")
    use_registry(tmp_path, monkeypatch, entry("h", source, sha=sha256(OTHER)))
    assert cache_state("h") == "missing"
    with pytest.raises(VswinError, match="does not match its sha256"):
        resolve_checkpoint("h")
    assert not is_cached("h")


def test_a_hub_download_that_broke_off_once_prints_no_retry_log(env: Path, hub: FakeHub) -> None:
    # Was: huggingface_hub's "Error while downloading ... Trying to resume download..." on stderr (a dozen
    # such lines before vswin's one when every attempt breaks off).
    from tests.conftest import run_vswin

    commit = hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    hub.inject(hub.resolve_path("me/swin", commit, "model.pth"), Fault(cut_after=30_000))
    result = run_vswin("download", f"hf://me/swin@{commit}/model.pth")  # HF_HOME, HF_ENDPOINT: from env
    assert result.returncode == 0 and result.stdout.startswith(f"ok  hf://me/swin@{commit}/model.pth  ")
    assert result.stderr == ""


# ----------------------------------------------------------------------------- changed files, half-cached repositories, a failing Hub


def cut_once(hub: FakeHub, path: str) -> None:
    """The next download of ``path`` breaks off after 50,000 bytes and its retry gets HTTP 500: those bytes stay."""
    hub.inject(path, Fault(cut_after=50_000))
    hub.inject(path, Fault(status=500))


def first_download_cut(hub: FakeHub, tmp_path: Path, monkeypatch, validators: tuple[str, ...] = ("etag", "last-modified")) -> str:
    """Registry entry ``m``: release file w.pth (no hash, no size: as every shipped entry), whose
    first download fails after 50,000 bytes, which stay in its partial file. Returns its URL."""
    url = hub.add_file("w.pth", WEIGHTS, validators)
    use_registry(tmp_path, monkeypatch, entry("m", f'url = "{url}"'))
    cut_once(hub, "/files/w.pth")
    with pytest.raises(VswinError, match="HTTP 500"):
        resolve_checkpoint("m")
    return url


@pytest.mark.parametrize(
    "validators",
    [("etag", "last-modified"), ("last-modified",), ("weak-etag", "last-modified")],
    ids=["etag", "last-modified", "weak-etag"],
)
def test_a_partial_download_of_a_file_that_changed_since_starts_over(
    env: Path, tmp_path, monkeypatch, hub: FakeHub, validators: tuple[str, ...]
) -> None:
    # Was: resumed onto the new file with a bare Range, and the splice trusted as the first download.
    first_download_cut(hub, tmp_path, monkeypatch, validators)
    first_version = f'"{sha256(WEIGHTS)[:16]}"' if validators[0] == "etag" else hub.file_modified["w.pth"]
    hub.add_file("w.pth", OTHER, validators)  # a new release at the same address, of the same size
    hub.log.clear()
    assert resolve_checkpoint("m").path.read_bytes() == OTHER
    [request] = hub.requests_for("/files/w.pth")  # answered 200: the whole new file, not its tail
    assert request.range == "bytes=50000-" and request.if_range == first_version


def test_a_server_that_ignores_if_range_is_caught_by_the_version_it_names(
    env: Path, tmp_path, monkeypatch, hub: FakeHub
) -> None:
    first_download_cut(hub, tmp_path, monkeypatch)
    hub.add_file("w.pth", OTHER)
    hub.inject("/files/w.pth", Fault(ignore_if_range=True))  # 206 with the new file's tail (and its ETag)
    hub.log.clear()
    assert resolve_checkpoint("m").path.read_bytes() == OTHER
    assert [r.range for r in hub.requests_for("/files/w.pth")] == ["bytes=50000-", None]


def test_bytes_of_a_file_whose_server_names_no_version_are_never_resumed(
    env: Path, tmp_path, monkeypatch, hub: FakeHub
) -> None:
    # Without an ETag or Last-Modified nothing can tell the file did not change between two requests.
    first_download_cut(hub, tmp_path, monkeypatch, validators=())
    assert [r.range for r in hub.requests_for("/files/w.pth")] == [None, None]  # the retry started over
    hub.add_file("w.pth", OTHER, validators=())
    hub.log.clear()
    assert resolve_checkpoint("m").path.read_bytes() == OTHER
    assert [r.range for r in hub.requests_for("/files/w.pth")] == [None]


def test_a_download_interrupted_while_it_starts_over_resumes_the_new_file(
    env: Path, tmp_path, monkeypatch, hub: FakeHub
) -> None:
    # The partial file and the version it holds change together, wherever Ctrl-C comes.
    from contextlib import contextmanager

    import vswin_cli.resumable_download

    url = first_download_cut(hub, tmp_path, monkeypatch)
    hub.add_file("w.pth", OTHER)

    class CtrlC:
        def update(self, received: int) -> None:  # called once the first bytes are written
            raise KeyboardInterrupt

    @contextmanager
    def ctrl_c_after_the_first_bytes(label: str, total: int | None, initial: int):
        yield CtrlC()

    with monkeypatch.context() as patch:
        patch.setattr(vswin_cli.resumable_download, "_progress", ctrl_c_after_the_first_bytes)
        with pytest.raises(KeyboardInterrupt):
            resolve_checkpoint("m")  # If-Range answered 200: the new file, from byte 0
    arrived = url_cache_path(url, "w.pth.incomplete").stat().st_size
    assert 0 < arrived < len(OTHER)
    hub.log.clear()
    assert resolve_checkpoint("m").path.read_bytes() == OTHER
    [request] = hub.requests_for("/files/w.pth")
    assert request.range == f"bytes={arrived}-" and request.if_range == f'"{sha256(OTHER)[:16]}"'


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """No waits between retries (huggingface_hub's 1, 2, 4, 8, 8 s, vswin's own): the retries still run."""
    import time

    monkeypatch.setattr(time, "sleep", lambda seconds: None)


@pytest.mark.parametrize("missing", ["config.json", "labels.txt"])
def test_a_repository_file_that_never_reached_the_cache_is_missed_offline(
    env: Path, hub: FakeHub, monkeypatch, no_backoff, missing: str
) -> None:
    # Was: the cache's answer listed the snapshot folder, so the weights ran with the Kinetics names or
    # the default protocol, silently, once a run had failed on that file after caching the weights.
    config = {"id2label": {"0": "cat", "1": "dog"}, "protocol": {"num_clips": 2, "num_crops": 1}}
    files = {"model.pth": WEIGHTS, "labels.txt": b"cat\ndog\n", "config.json": json.dumps(config).encode()}
    commit = hub.add_commit("me/lab", files)
    hub.inject(hub.resolve_path("me/lab", commit, missing), Fault(body=b"x" * len(files[missing]), times=2))
    with pytest.raises(VswinError, match="does not match"):
        resolve_checkpoint("hf://me/lab")
    assert (env / "hub" / "models--me--lab" / "snapshots" / commit / "model.pth").is_file()
    for where, unreachable in (("HF_HUB_OFFLINE is set", "offline"), ("could not deliver", "no Hub")):
        if unreachable == "offline":
            monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        else:
            monkeypatch.delenv("HF_HUB_OFFLINE")
            monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")  # nothing listens there
        with pytest.raises(VswinError) as caught:
            resolve_checkpoint("hf://me/lab")
        message = str(caught.value)
        assert f"snapshots/{commit}/{missing}" in message and where in message, message
        assert "vswin download hf://me/lab" in message and "\n" not in message
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    checkpoint = resolve_checkpoint("hf://me/lab")  # a later good run completes the cache
    assert checkpoint.labels == ["cat", "dog"] and checkpoint.protocol == KINETICS.with_overrides(num_clips=2, num_crops=1)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_checkpoint("hf://me/lab").labels == ["cat", "dog"]


def test_a_snapshot_cached_by_an_older_vswin_still_works_offline_and_says_what_it_cannot_tell(
    env: Path, hub: FakeHub, monkeypatch, capsys
) -> None:
    # An older vswin recorded no listing: a complete snapshot of a repository without labels.txt cannot be
    # told from one whose labels.txt failed to download. It is used, with one line that says so.
    hub.add_commit("me/swin", {"model.pth": WEIGHTS, "config.json": b"{}"})
    hub.add_commit("me/full", {"model.pth": WEIGHTS, "config.json": b"{}", "labels.txt": b"cat\ndog\n"})
    online = {ref: resolve_checkpoint(ref) for ref in ("hf://me/swin", "hf://me/full")}
    shutil.rmtree(env / "vswin" / "repos", ignore_errors=True)  # the listings recorded online
    capsys.readouterr()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = resolve_checkpoint("hf://me/swin")
    assert offline.path == online["hf://me/swin"].path and offline.labels is None
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "without labels.txt" in err and "config.json" not in err, err
    assert "cached by an older vswin" in err and "run `vswin download hf://me/swin` with a network" in err
    assert resolve_checkpoint("hf://me/full").labels == ["cat", "dog"]
    assert capsys.readouterr().err == ""  # nothing it could lack


def test_a_hub_download_is_resumed_when_huggingface_hub_gives_up_on_a_cut(
    env: Path, hub: FakeHub, monkeypatch, no_backoff
) -> None:
    # huggingface_hub 0.x raises requests' ChunkedEncodingError at the first cut in a body (1.0 and later
    # resume by themselves): one dropped connection failed every Hub download.
    import huggingface_hub

    import vswin_cli.hub_files

    # (requests comes with huggingface_hub 0.x, where this matters; 1.0 and later use httpx)
    requests = pytest.importorskip("requests", reason="huggingface_hub 0.x's HTTP client is not installed")
    real_download = huggingface_hub.hf_hub_download
    calls: list[int] = []
    cuts = {"left": 100}

    def cut_like_huggingface_hub_0x(*args, **kwargs):
        calls.append(1)
        if cuts["left"] > 0:
            cuts["left"] -= 1
            raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(50000 bytes read)")
        return real_download(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cut_like_huggingface_hub_0x)
    monkeypatch.setattr(vswin_cli.hub_files, "_HUB_ATTEMPTS", 3, raising=False)
    commit = hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    ref = f"hf://me/swin@{commit}/model.pth"
    with pytest.raises(VswinError) as caught:  # a connection that keeps breaking: a bounded number of tries
        resolve_checkpoint(ref)
    assert len(calls) == 3 and "\n" not in str(caught.value)
    assert "kept breaking off" in str(caught.value) and "running the command again resumes" in str(caught.value)
    calls.clear()
    cuts["left"] = 2
    assert resolve_checkpoint(ref).path.read_bytes() == WEIGHTS
    assert len(calls) == 3


@pytest.mark.parametrize("filename", ["model.pth", "labels.txt"])
def test_a_hub_file_that_arrives_wrong_twice_names_what_it_should_be(env: Path, hub: FakeHub, filename: str) -> None:
    # Was: "does not match its git blob sha1 None ()": the expectation was read again from the deleted blob.
    from hub_server import git_blob_sha1

    files = {"model.pth": WEIGHTS, "labels.txt": b"cat\ndog\n"}
    commit = hub.add_commit("me/swin", files)
    data = files[filename]
    hub.inject(hub.resolve_path("me/swin", commit, filename), Fault(body=b"x" * len(data), times=2))
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("hf://me/swin")
    message = str(caught.value)
    wanted = f"sha256 {sha256(data)[:16]}..." if filename == "model.pth" else f"git blob sha1 {git_blob_sha1(data)}"
    assert f"/{filename}) does not match its {wanted} (the Hub's ETag); the file was discarded. Try again later" in message
    assert "None" not in message and "\n" not in message
    assert resolve_checkpoint("hf://me/swin").labels == ["cat", "dog"]


@pytest.mark.parametrize("name", ["m", "h"])
def test_a_file_size_limit_says_so_and_keeps_what_arrived(
    two_models: str, env: Path, hub: FakeHub, monkeypatch, capsys, disk_full, name: str
) -> None:
    # Was: "kept breaking off ... running the command again resumes it" (a release URL) and "download failed:
    # OSError: [Errno 27] File too large" (the Hub): `ulimit -f`, a quota or FAT32's 4 GiB read as a network fault.
    limit = disk_full(env, 50_000, errno.EFBIG)
    code, out, err = run_vswin(capsys, monkeypatch, "download", name)
    assert code == 1 and out == "" and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "too large" in err and "ulimit -f" in err and "HF_HOME" in err and str(env) in err
    assert "kept breaking off" not in err and "download failed" not in err
    assert loadable_files(env) == [] and cache_state(name) == "missing"
    limit["free"] = 1 << 30  # the limit raised: the same command succeeds
    assert resolve_checkpoint(name).path.read_bytes() == WEIGHTS


def hub_paths(commit: str) -> list[str]:
    """What resolving `h` and `hf://me/swin` asks the Hub: the pinned file, the listing of main."""
    return [f"/me/swin/resolve/{commit}/model.pth", "/api/models/me/swin/revision/main"]


@pytest.mark.parametrize("status", [503, 429])
@pytest.mark.parametrize("name", ["h", "hf://me/swin"])
def test_a_failing_hub_says_try_again_later_not_that_the_network_is_missing(
    two_models: str, hub: FakeHub, no_backoff, name: str, status: int
) -> None:
    # Was: "model 'h' is not in the cache ... run `vswin download h` on a machine with a network": the
    # network works, the Hub is failing for a while.
    for path in hub_paths(two_models):
        hub.inject(path, Fault(status=status, methods=("HEAD", "GET"), times=50))
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint(name)
    message = str(caught.value)
    assert message.endswith(f"the Hub answered HTTP {status}; try again later") and "\n" not in message, message
    hub.faults.clear()
    assert resolve_checkpoint(name).path.read_bytes() == WEIGHTS


@pytest.mark.parametrize("name", ["h", "hf://me/swin"])
def test_a_gated_repository_says_to_request_access(two_models: str, hub: FakeHub, name: str) -> None:
    # Was: "repository me/swin not found (or private: ...)".
    for path in hub_paths(two_models):
        hub.inject(path, Fault(status=403, error_code="GatedRepo", methods=("HEAD", "GET"), times=50))
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint(name)
    message = str(caught.value)
    assert message.endswith(
        f"repository me/swin is gated: request access on its page ({hub.url}/me/swin) and log in with `hf auth login`"
    ), message


# ----------------------------------------------------------------------------- threads, exit codes, things in the way


def test_hub_downloads_in_several_threads_leave_the_log_level_and_warning_filters_as_they_were(
    env: Path, monkeypatch
) -> None:
    # Was: each download saved and restored huggingface_hub's log level (and the whole warning filter list)
    # itself; two that overlapped (A in, B in, A out, B out) restored each other's muted state, so the log
    # stayed at CRITICAL+1 for good (and the disk-space "ignore" stayed in the filters).
    import logging
    import threading
    import warnings

    from huggingface_hub import errors, hf_hub_download  # noqa: F401  (their first import sets the log level)

    import vswin_cli.hub_files as hub_files

    logger = logging.getLogger("huggingface_hub")
    monkeypatch.setattr(logger, "level", logger.level)  # restored after the test, whatever happens
    logger.setLevel(logging.INFO)
    monkeypatch.delenv("HF_HUB_VERBOSITY", raising=False)
    filters = list(warnings.filters)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    muted: list[bool] = []

    def download(name: str) -> str:
        if name == "a":
            a_in.set()
            assert b_in.wait(30)  # B comes in while A is still downloading
        else:
            b_in.set()
            assert a_out.wait(30)  # and goes out after A
        muted.append(logger.getEffectiveLevel() > logging.CRITICAL)
        return name

    monkeypatch.setattr(hub_files, "_resuming_broken_connections", lambda fetch: fetch())
    monkeypatch.setattr("huggingface_hub.hf_hub_download", lambda repo_id, *args, **kwargs: download(repo_id))
    results: list[str] = []

    def run(name: str) -> None:
        results.append(hub_files._hf_download(name, name, "model.pth", "main"))
        if name == "a":
            a_out.set()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    threads[0].start()
    assert a_in.wait(30)
    threads[1].start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == ["a", "b"] and muted == [True, True]  # quiet while either downloads
    assert logger.level == logging.INFO  # and as it was once both are done
    assert warnings.filters == filters


@pytest.mark.parametrize(
    "problem", ["full", "file-size limit", "read-only", "a file for HF_HOME", "unusable HF_HOME", "unreadable"]
)
@pytest.mark.parametrize("name", ["m", "h", "hf://me/swin"])
def test_a_cache_that_cannot_be_used_is_exit_1_not_a_usage_error(
    two_models: str, env: Path, tmp_path, monkeypatch, disk_full, read_only, unreadable, problem: str, name: str
) -> None:
    # Was: exit 2 (README: usage errors) from classify and extract-features, which let VswinError's default
    # stand, while `vswin download` said 1 for the same full disk.
    env.mkdir()
    if problem == "full":
        disk_full(env, 50_000)
    elif problem == "file-size limit":
        disk_full(env, 50_000, errno.EFBIG)
    elif problem == "read-only":
        read_only(env)
    elif problem == "a file for HF_HOME":
        env.rmdir()
        env.write_text("not a folder")
    elif problem == "unusable HF_HOME":
        (tmp_path / "loop").symlink_to("loop")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "loop" / "hf"))
    else:
        unreadable(env)
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint(name)
    assert caught.value.exit_code == 1, str(caught.value)
    assert "\n" not in str(caught.value) and "HF_HOME" in str(caught.value)


@pytest.mark.parametrize("case", ["first", "update"])
def test_a_ref_that_cannot_be_written_whole_is_not_left_empty(env: Path, hub: FakeHub, monkeypatch, disk_full, case: str) -> None:
    # Was: refs/main written in place: a full disk truncated it to nothing and said nothing ("ok"); offline,
    # the empty ref named the snapshots folder itself as the commit.
    old = hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    refs = env / "hub" / "models--me--swin" / "refs"
    if case == "update":
        resolve_checkpoint("hf://me/swin")
        assert (refs / "main").read_text() == old
        hub.add_commit("me/swin", {"model.pth": OTHER})
    else:
        resolve_checkpoint(f"hf://me/swin@{old}")  # the commit cached, main never resolved
        assert not (refs / "main").exists()
    refs.mkdir(parents=True, exist_ok=True)
    disk_full(refs, 0)  # nothing more fits beside the ref
    new = resolve_checkpoint("hf://me/swin")  # online: the Hub names the commit, the ref is only for offline use
    assert new.path.read_bytes() == (OTHER if case == "update" else WEIGHTS)
    assert files_under(refs) == ([] if case == "first" else ["main"])  # no temporary file either
    if case == "update":
        assert (refs / "main").read_text() == old  # the old ref, whole
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert resolve_checkpoint("hf://me/swin").path.read_bytes() == WEIGHTS


@pytest.mark.parametrize("name", ["m", "h"])
def test_a_folder_where_the_cache_keeps_a_file_is_one_line(two_models: str, env: Path, monkeypatch, capsys, name: str) -> None:
    # Was: an IsADirectoryError traceback (from reading the folder as the checkpoint).
    from vswin_cli.hub import cache_path_for
    from vswin_cli.registry import get_spec

    folder = cache_path_for(get_spec(name))
    folder.mkdir(parents=True)
    (folder / "keep.txt").write_text("mine")
    code, out, err = run_vswin(capsys, monkeypatch, "models", "--format", "json")
    assert code == 0 and all(not row["cached"] for row in json.loads(out)), out
    for offline in ("", "1"):
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        code, out, err = run_vswin(capsys, monkeypatch, "download", name)
        assert code == 1 and out == "" and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert err.startswith(f"error: {name}: a folder stands where the cache keeps its file ({folder}); ") and (
            "move it away or point HF_HOME at another folder" in err
        ), err
    assert files_under(folder) == ["keep.txt"]  # never removed: vswin removes only files it wrote


@pytest.mark.parametrize("damage", ["not UTF-8", "empty", "a folder", "not a commit"])
def test_a_damaged_ref_offline_is_one_line(env: Path, hub: FakeHub, monkeypatch, damage: str) -> None:
    # Was: a UnicodeDecodeError traceback (bytes that are not UTF-8), or an empty ref taken as the commit ""
    # (the snapshots folder itself).
    commit = hub.add_commit("me/swin", {"model.pth": WEIGHTS})
    resolve_checkpoint("hf://me/swin")
    ref = env / "hub" / "models--me--swin" / "refs" / "main"
    ref.unlink()
    if damage == "a folder":
        ref.mkdir()
    else:
        ref.write_bytes({"not UTF-8": b"\xff\xfe" + commit.encode(), "empty": b"", "not a commit": b"main\n"}[damage])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(VswinError) as caught:
        resolve_checkpoint("hf://me/swin")
    message = str(caught.value)
    assert message.startswith(f"hf://me/swin: the file in the cache that names the commit of 'main' ({ref}) "), message
    assert "run `vswin download hf://me/swin` with a network" in message and "hf://me/swin@COMMIT" in message
    assert "\n" not in message and caught.value.exit_code == 1
    assert resolve_checkpoint(f"hf://me/swin@{commit}").path.read_bytes() == WEIGHTS  # the commit, named, works
