"""weights.toml: the shipped registry says what the official model zoo and torchvision publish."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from vswin_cli.errors import VswinError
from vswin_cli.protocol import KINETICS, STHV2, Protocol
from vswin_cli.registry import (
    WEIGHTS_TOML_ENV,
    get_spec,
    list_specs,
    load_labels,
    load_registry,
    parse_protocol,
    weights_toml_path,
)

RELEASE = "https://github.com/SwinTransformer/storage/releases/download/v1.0.4/"
TORCHVISION = "https://download.pytorch.org/models/"

# name -> (file, top-1, embed_dim, depths, heads, window, label set, classes), transcribed from the
# official README model zoo / configs and torchvision's Swin3D_*_Weights.
EXPECTED = {
    "swin-t-k400": (RELEASE + "swin_tiny_patch244_window877_kinetics400_1k.pth", 78.8, 96, (2, 2, 6, 2), (3, 6, 12, 24), (8, 7, 7), "kinetics400", 400),
    "swin-s-k400": (RELEASE + "swin_small_patch244_window877_kinetics400_1k.pth", 80.6, 96, (2, 2, 18, 2), (3, 6, 12, 24), (8, 7, 7), "kinetics400", 400),
    "swin-b-k400": (RELEASE + "swin_base_patch244_window877_kinetics400_1k.pth", 80.6, 128, (2, 2, 18, 2), (4, 8, 16, 32), (8, 7, 7), "kinetics400", 400),
    "swin-b-k400-22k": (RELEASE + "swin_base_patch244_window877_kinetics400_22k.pth", 82.7, 128, (2, 2, 18, 2), (4, 8, 16, 32), (8, 7, 7), "kinetics400", 400),
    "swin-b-k600-22k": (RELEASE + "swin_base_patch244_window877_kinetics600_22k.pth", 84.0, 128, (2, 2, 18, 2), (4, 8, 16, 32), (8, 7, 7), "kinetics600", 600),
    "swin-b-sthv2": (RELEASE + "swin_base_patch244_window1677_sthv2.pth", 69.6, 128, (2, 2, 18, 2), (4, 8, 16, 32), (16, 7, 7), "sthv2", 174),
    "tv-swin3d-t": (TORCHVISION + "swin3d_t-7615ae03.pth", 77.715, 96, (2, 2, 6, 2), (3, 6, 12, 24), (8, 7, 7), "kinetics400", 400),
    "tv-swin3d-s": (TORCHVISION + "swin3d_s-da41c237.pth", 79.521, 96, (2, 2, 18, 2), (3, 6, 12, 24), (8, 7, 7), "kinetics400", 400),
    "tv-swin3d-b": (TORCHVISION + "swin3d_b_1k-24f7c7c6.pth", 79.427, 128, (2, 2, 18, 2), (4, 8, 16, 32), (8, 7, 7), "kinetics400", 400),
    "tv-swin3d-b-22k": (TORCHVISION + "swin3d_b_22k-7c6ae6fa.pth", 81.643, 128, (2, 2, 18, 2), (4, 8, 16, 32), (8, 7, 7), "kinetics400", 400),
}


@pytest.fixture(autouse=True)
def _shipped_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEIGHTS_TOML_ENV, raising=False)


def test_every_checkpoint_is_listed_once_and_swin_t_is_the_default() -> None:
    assert [s.name for s in list_specs()] == list(EXPECTED)
    assert load_registry().default == "swin-t-k400"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_entry_matches_the_published_model_zoo(name: str) -> None:
    url, top1, dim, depths, heads, window, label_set, classes = EXPECTED[name]
    spec = get_spec(name)
    assert [s.url for s in spec.sources] == [url]
    assert spec.filename == url.rsplit("/", 1)[1]
    assert spec.top1 == pytest.approx(top1)
    assert (spec.arch.embed_dim, spec.arch.depths, spec.arch.num_heads, spec.arch.window_size) == (dim, depths, heads, window)
    assert spec.arch.patch_size == (2, 4, 4)
    assert spec.label_set == label_set and spec.num_classes == classes == len(load_labels(label_set))
    # No official checkpoint is on the Hub: no entry may claim a Hub source.
    assert not any(s.is_hub for s in spec.sources)


def test_hash_prefixes_are_the_ones_in_torchvision_file_names() -> None:
    for name, (url, *_rest) in EXPECTED.items():
        spec = get_spec(name)
        if name.startswith("tv-"):
            assert spec.sha256_prefix == url.rsplit("-", 1)[1].removesuffix(".pth")
            assert spec.layout == "torchvision"
        else:
            # Nothing is published for the official files: trust on first download.
            assert spec.sha256 is None and spec.sha256_prefix is None
            assert spec.layout == "official"


def test_protocols_follow_the_official_configs_and_torchvision_docs() -> None:
    assert get_spec("swin-t-k400").protocol == KINETICS == Protocol("clips", 32, 2, 4, 3, 224, 224)
    assert get_spec("swin-b-k600-22k").protocol == KINETICS
    assert get_spec("swin-b-sthv2").protocol == STHV2 == Protocol("uniform", 32, 2, 1, 3, 224, 224)
    # torchvision: clip_len=32, clips_per_video=12, resize 256, centre crop 224.
    assert get_spec("tv-swin3d-t").protocol == Protocol("clips", 32, 2, 12, 1, 256, 224)


def test_label_sets_are_bundled_in_class_order() -> None:
    k400 = load_labels("kinetics400")
    assert (k400[0], k400[-1]) == ("abseiling", "zumba")
    assert load_labels("sthv2")[0] == "Approaching something with your camera"
    with pytest.raises(VswinError, match="unknown label set"):
        load_labels("imagenet")


def test_unknown_name_suggests_close_matches_and_vswin_models() -> None:
    with pytest.raises(VswinError) as caught:
        get_spec("swin-t-k40")
    message = str(caught.value)
    assert "swin-t-k400" in message and "vswin models" in message and "\n" not in message
    assert caught.value.exit_code == 2


def test_weights_toml_env_var_replaces_the_registry(tmp_path, monkeypatch) -> None:
    other = tmp_path / "other.toml"
    other.write_text(
        'default = "mine"\n[models.mine]\nfilename = "x.pth"\nlayout = "official"\n'
        "arch = { embed_dim = 32, depths = [1, 1], num_heads = [1, 2], window_size = [2, 7, 7], patch_size = [2, 4, 4] }\n"
        'label_set = "sthv2"\nnum_classes = 174\nprotocol = { sampling = "uniform", num_clips = 1 }\n'
        '[[models.mine.sources]]\nurl = "http://127.0.0.1:9/x.pth"\n'
    )
    monkeypatch.setenv(WEIGHTS_TOML_ENV, str(other))
    assert weights_toml_path() == other
    assert [s.name for s in list_specs()] == ["mine"]
    assert get_spec("mine").protocol == Protocol(sampling="uniform", num_clips=1)


@pytest.mark.parametrize(
    "broken, complaint",
    [
        ("[models.a]\n", "missing"),
        ("[models.a\n", "not valid TOML"),
        ('[models.a]\nfilename = "a.pth"\nlayout = "official"\nnum_classes = 2\narch = { embed_dim = 8, depths = [1], num_heads = [1, 2], window_size = [2, 7, 7], patch_size = [2, 4, 4] }\n', "num_heads"),
    ],
)
def test_a_broken_registry_is_one_clear_error(tmp_path, monkeypatch, broken: str, complaint: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(broken)
    monkeypatch.setenv(WEIGHTS_TOML_ENV, str(path))
    with pytest.raises(VswinError, match=complaint) as caught:
        list_specs()
    assert str(path) in str(caught.value)


def test_uniform_sampling_takes_one_sequence_not_several_clips(tmp_path, monkeypatch) -> None:
    # Was accepted: every record then said "clips": 4 for the one sequence that ran.
    with pytest.raises(VswinError, match="num_clips must be 1 with sampling 'uniform'"):
        parse_protocol({"sampling": "uniform", "num_clips": 4}, "x.safetensors metadata")
    assert parse_protocol({"sampling": "uniform"}, "here").num_clips == 1


def test_missing_override_file_says_so(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(WEIGHTS_TOML_ENV, str(tmp_path / "nope.toml"))
    with pytest.raises(VswinError, match=WEIGHTS_TOML_ENV):
        list_specs()


def test_a_registry_that_is_not_text_or_a_home_that_does_not_exist_is_one_line(tmp_path, monkeypatch) -> None:
    # Was: UnicodeDecodeError and RuntimeError tracebacks.
    path = tmp_path / "utf16.toml"
    path.write_bytes("[models.a]\n".encode("utf-16"))
    monkeypatch.setenv(WEIGHTS_TOML_ENV, str(path))
    with pytest.raises(VswinError, match=r"utf16\.toml is not valid TOML: it is not UTF-8 text$"):
        list_specs()
    monkeypatch.setenv(WEIGHTS_TOML_ENV, "~no-such-user-here/weights.toml")
    with pytest.raises(VswinError, match=r"does not name a file"):
        list_specs()


def test_a_labels_file_saved_by_windows_notepad_gives_clean_names(tmp_path) -> None:
    from vswin_cli.loading import read_labels_file

    path = tmp_path / "labels.txt"
    path.write_bytes("\ufeffabseiling\r\nair drumming\r\nanswering questions\r\n".encode("utf-8"))
    assert read_labels_file(path) == ["abseiling", "air drumming", "answering questions"]


def one_entry(filename: str = "x.pth", source: str = 'url = "http://127.0.0.1:9/x.pth"', size: str = "0") -> str:
    return (
        f'[models.a]\nfilename = "{filename}"\nlayout = "official"\nsize = {size}\n'
        "arch = { embed_dim = 32, depths = [1, 1], num_heads = [1, 2], window_size = [2, 7, 7], patch_size = [2, 4, 4] }\n"
        'label_set = "sthv2"\nnum_classes = 174\nprotocol = { sampling = "uniform" }\n'
        f"[[models.a.sources]]\n{source}\n"
    )


HUB = 'hub = "me/swin"\nrevision = "' + "0" * 40 + '"\n'


@pytest.mark.parametrize(
    "text, field",
    [
        (one_entry(filename="tiny\\u0000x.safetensors"), "filename"),
        (one_entry(filename="x\\n.pth"), "filename"),
        (one_entry(filename="x" * 250 + ".pth"), "filename"),
        (one_entry(source='url = "http://127.0.0.1:9/x\\u0000.pth"'), "sources[0]"),
        (one_entry(source='url = "http://127.0.0.1:9/my file.pth"'), "sources[0]"),
        (one_entry(source=HUB + 'filename = "model\\u0000.pth"'), "sources[0]"),
        (one_entry(source=HUB + 'filename = "../../outside.pth"'), "sources[0]"),
        (one_entry(source='hub = "me/sw\\u0000in"\nfilename = "m.pth"\nrevision = "' + "0" * 40 + '"'), "sources[0]"),
        (one_entry(size="100000000000000000000"), "size"),
    ],
    ids=["nul", "newline", "too-long", "url-nul", "url-space", "hub-file-nul", "hub-file-dotdot", "hub-repo-nul", "size"],
)
def test_a_string_that_becomes_a_path_or_url_is_checked_in_one_line(tmp_path, monkeypatch, text: str, field: str) -> None:
    # Was: accepted, then a traceback (ValueError: embedded null byte) inside the download, a path
    # outside the cache, or a size shown as 95367431640625.0 MiB.
    path = tmp_path / "weights.toml"
    path.write_text(text)
    monkeypatch.setenv(WEIGHTS_TOML_ENV, str(path))
    with pytest.raises(VswinError) as caught:
        get_spec("a")
    message = str(caught.value)
    assert message.startswith(f"{path}: models.a.{field} ") and "\n" not in message and "\0" not in message
    assert caught.value.exit_code == 2


def test_a_labels_file_that_is_no_text_file_is_one_line(tmp_path):
    # Was: a FIFO blocked for ever, /dev/zero or a 50 GB file grew memory until a MemoryError
    # traceback (or the OOM killer), a symlink loop said only "OSError".
    from vswin_cli.loading import read_labels_file

    fifo = tmp_path / "labels.fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as handle:
        handle.truncate(50 << 30)  # sparse: no disk used
    loop = tmp_path / "loop.txt"
    loop.symlink_to(loop)
    utf16 = tmp_path / "utf16.txt"
    utf16.write_text("a\nb\n", encoding="utf-16")
    for path, reason in ((fifo, "is not a regular file (a device, pipe or socket)"), (Path("/dev/zero"), "is not a regular file"),
                         (tmp_path, "is a folder"), (huge, "has 53,687,091,200 bytes, too many for class names"),
                         (loop, "Too many levels of symbolic links"), (utf16, "is not UTF-8 text")):
        with pytest.raises(VswinError, match=re.escape(reason)) as caught:
            read_labels_file(path)
        assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_the_models_table_keeps_its_values_whole_on_an_80_column_terminal(vswin, tmp_path):
    # Was: every column no_wrap, so an 85-column row on 80 columns showed "swin-t-k400 (defaul…", "kinetics4…".
    done = vswin("models", env={"COLUMNS": "80", "FORCE_COLOR": "1", "TERM": "xterm", "HF_HOME": str(tmp_path / "hf")})
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stdout)
    assert done.returncode == 0 and "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    words = text.split()
    assert {"swin-t-k400", "(default)", "kinetics400", "kinetics600", "78.8"} <= set(words)


@pytest.mark.parametrize(("seconds", "shown"), [(59.994, "0:59.99"), (59.996, "1:00.00"), (3599.996, "1:00:00.00"),
                                                (61.5, "1:01.50"), (0, "0:00.00")])
def test_a_timeline_clock_carries_into_the_next_minute(seconds, shown):
    # Was: seconds split off before rounding, so 59.996 s showed as 0:60.00 and 3599.996 s as 59:60.00.
    from vswin_cli.terminal import _clock

    assert _clock(seconds) == shown
