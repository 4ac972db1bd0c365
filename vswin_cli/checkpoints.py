"""Checkpoint files: reading them safely, recognising their layout, building the model they hold.

Layouts (each mapped onto the native one by a pure renaming function):

- ``official``: the Video Swin release, ``{"state_dict": {"backbone.*", "cls_head.fc_cls.*"}}``.
- ``mmaction2``: mmaction2 1.x, the same but the final norm is ``backbone.norm3``.
- ``torchvision``: ``SwinTransformer3d`` (``patch_embed``, ``features.{2i}.{j}`` blocks with
  ``mlp.0``/``mlp.3``, ``features.{2i+1}`` patch merging, ``norm``, ``head``).
- ``native``: ours (``patch_embed``, ``layers.{i}.blocks.{j}``, ``layers.{i}.downsample``,
  ``norm``, ``head``), as plain state dicts or as safetensors written by :func:`save_native`.

Wrapper prefixes (``module.``, ``model.``) and wrapper dicts (``state_dict``, ``model``) are
removed first. The architecture is read from the tensor shapes. Nothing but tensors and plain
containers is ever unpickled.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import zipfile
import zlib
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from .checkpoint_signatures import is_safetensors_head
from .errors import VswinError
from .hidden_warnings import hidden_warnings
from .model import SwinConfig, VideoSwin, relative_position_index
from .protocol import Protocol
from .verification import file_identity, file_sha256

StateDict = dict[str, Tensor]

NATIVE_FORMAT = "vswin-native-1"
_WRAPPER_KEYS = ("state_dict", "model", "module", "model_state", "model_state_dict", "net")
_WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
# Buffers recomputed from the window size; other implementations save them, we drop them.
_DERIVED_SUFFIXES = ("relative_position_index", "attn_mask")


# torch's notes that are not the user's business: on reading a pickle written with another protocol
# than torch's own (or a TorchScript archive, which is then refused), and on initialising the empty
# head of a 0-class model.
_PICKLE_NOTES = (r"Detected pickle protocol \d+ in the checkpoint", r"'torch\.load' received a zip file that looks like a TorchScript archive")
_EMPTY_HEAD_NOTE = r"Initializing zero-element tensors is a no-op"


class CheckpointError(VswinError):
    """A checkpoint file that cannot be used: one line saying why."""


@dataclass
class LoadedCheckpoint:
    model: VideoSwin
    layout: str
    sha256: str
    labels: list[str] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    protocol: Protocol | None = None  # the test protocol a converted file carries (save_native)


# --- reading files ----------------------------------------------------------------------------


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as f:
        return is_safetensors_head(f.read(9))


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The raw mapping stored in a checkpoint file, and its safetensors metadata (if any).

    Pickle files are read with ``weights_only=True``: only tensors and plain data are built.
    Objects of other classes that training tools store beside the weights (a NumPy score in
    mmcv's ``meta``, mmengine's log buffers) become inert stand-ins: their code is never imported
    or run. A file that names code to run (``os.system``, ``eval``...) is refused.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if not path.is_file():  # reading a FIFO would block, a device never end
        raise CheckpointError(f"{path} is not a regular file (a device, pipe or socket), not a checkpoint file")
    try:
        size = path.stat().st_size
        if size == 0:
            raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint")
        if _is_safetensors(path):
            return _read_safetensors(path)
        return _read_pickle(path), {}
    except PermissionError as error:
        raise CheckpointError(f"cannot read {path}: permission denied") from error


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        tensors: dict[str, Any] = {}
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
        return tensors, metadata
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file (corrupted or truncated?)") from error


# Modules a checkpoint has no reason to name except to run code while it is unpickled.
_CODE_MODULES = frozenset({
    "builtins", "os", "posix", "nt", "sys", "subprocess", "importlib", "runpy", "pickle", "_pickle", "marshal",
    "ctypes", "shutil", "socket", "pty", "code", "webbrowser", "types", "operator", "_operator", "functools",
    "inspect", "pydoc",
})
_STAND_IN_ROUNDS = 64  # distinct foreign names one file may carry (legacy files find them one per load)


class _StandIn:
    """What an object of a class we do not import becomes: its pickled arguments and state, inert."""

    pickled_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_StandIn":
        instance = super().__new__(cls)
        instance.args = args
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.pickled_name}, not loaded>"


def _stand_in(name: str) -> tuple[type, str]:
    return type(name.rsplit(".", 1)[-1], (_StandIn,), {"pickled_name": name}), name


def _runs_code(name: str) -> bool:
    return "." not in name or name.split(".", 1)[0] in _CODE_MODULES  # no dot: a builtin, as torch reports it


def _refuse_code(path: Path, name: str) -> CheckpointError:
    return CheckpointError(
        f"refusing {path}: it asks to run code ({name}) when loaded; only tensors and plain data are read from checkpoints"
    )


def _foreign_names(path: Path) -> list[str]:
    """The globals a zip checkpoint names beyond torch's safe ones, found without unpickling."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # a legacy (pre-zip) file, or not a checkpoint at all: the load below finds out
        return []


def _damaged_record(path: Path) -> str | None:
    """The first record of a zip-format checkpoint whose bytes fail their CRC32, or None. torch.load
    does not check them: a flipped byte in a tensor loads as another weight."""
    try:
        if not zipfile.is_zipfile(path):
            return None  # a legacy (pre-zip) file: no checksums to check
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError, zlib.error):
        return None  # unreadable as a zip: torch.load below says so


def _read_pickle(path: Path) -> dict[str, Any]:
    damaged = _damaged_record(path)
    if damaged is not None:
        raise CheckpointError(f"{path} is damaged: its part {damaged} does not match its checksum; download or copy it again")
    names = _foreign_names(path)
    for name in names:
        if _runs_code(name):
            raise _refuse_code(path, name)
    stand_ins = [_stand_in(name) for name in names]
    for _ in range(_STAND_IN_ROUNDS):
        try:
            allowing = torch.serialization.safe_globals(stand_ins) if stand_ins else nullcontext()
            # An open file, not the path: torch.load hands any path ending in .safetensors to the
            # safetensors reader, and this file is a pickle whatever its name.
            with hidden_warnings(*_PICKLE_NOTES), allowing, open(path, "rb") as handle:
                obj = torch.load(handle, map_location="cpu", weights_only=True)
            break
        except pickle.UnpicklingError as error:
            text = str(error)
            named = re.search(r"GLOBAL (\S+) (?:was not an allowed global|whose module)", text)
            if named is None:
                if "Weights only load failed" in text and "Unsupported operand" not in text:
                    raise CheckpointError(
                        f"refusing {path}: it is not a plain tensor checkpoint (it needs Python objects to load); "
                        "convert it where you trust it, or use a safetensors file"
                    ) from None
                raise CheckpointError(f"{path} is not a PyTorch checkpoint (unreadable pickle: corrupted or another kind of file)") from None
            name = named.group(1)
            if _runs_code(name) or "whose module" in text or any(name == known for _, known in stand_ins):
                raise _refuse_code(path, name) from None
            stand_ins.append(_stand_in(name))  # a legacy file: found one name at a time
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, IndexError, KeyError, TypeError,
                AssertionError) as error:  # (torch's legacy reader asserts on a storage it cannot find)
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupted or truncated?)") from error
    else:
        raise CheckpointError(f"refusing {path}: it names more than {_STAND_IN_ROUNDS} kinds of Python objects beside its tensors")
    if isinstance(obj, _StandIn):  # torch.save(model): the weights sit inside objects we do not build
        raise CheckpointError(
            f"{path} holds a whole pickled object ({obj.pickled_name}), not a state dict: "
            "save its state_dict() where you trust the file, or use a safetensors file"
        )
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    return dict(obj)


# --- layouts ----------------------------------------------------------------------------------


def unwrap_state_dict(obj: Mapping[str, Any]) -> StateDict:
    """Find the tensors: unwrap ``{"state_dict": ...}``-style containers and wrapper prefixes."""
    current: Mapping[str, Any] = obj
    for _ in range(4):
        # Weights have dotted names; a lone tensor beside a wrapper ({"state_dict": ..., "step":
        # tensor(100)}) is a training counter, not the model.
        if any(isinstance(v, Tensor) and "." in str(k) for k, v in current.items()):
            break
        inner = next((current[k] for k in _WRAPPER_KEYS if isinstance(current.get(k), Mapping)), None)
        if inner is None:
            break
        current = inner
    state = {str(k): v for k, v in current.items() if isinstance(v, Tensor)}
    changed = True
    while changed and state:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def _drop_derived(state: StateDict) -> StateDict:
    return {k: v for k, v in state.items() if not k.endswith(_DERIVED_SUFFIXES)}


def detect_layout(state: Mapping[str, Tensor]) -> str:
    keys = set(state)
    if any(k.startswith("backbone.") for k in keys):
        return "mmaction2" if any(re.match(r"backbone\.norm\d+\.", k) for k in keys) else "official"
    if any(k.startswith("features.") for k in keys):
        return "torchvision"
    if any(k.startswith("patch_embed.") for k in keys) and any(k.startswith("layers.") for k in keys):
        return "native"
    sample = ", ".join(sorted(keys)[:5]) or "no tensors at all"
    raise CheckpointError(f"not a Video Swin checkpoint: unknown layout (keys such as {sample})")


def official_to_native(state: Mapping[str, Tensor]) -> StateDict:
    out: StateDict = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            out[key[len("backbone.") :]] = value
        elif key.startswith("cls_head.fc_cls."):
            out["head." + key[len("cls_head.fc_cls.") :]] = value
        else:
            out[key] = value  # left for the unplaced-key check
    return out


def mmaction2_to_native(state: Mapping[str, Tensor]) -> StateDict:
    """mmaction2 1.x: the official layout, but the final norm is ``norm{last stage}``."""
    native = official_to_native(state)
    indices = sorted({int(m.group(1)) for k in native if (m := re.match(r"norm(\d+)\.", k))})
    if indices:
        last = indices[-1]
        native = {(("norm." + k.split(".", 1)[1]) if k.startswith(f"norm{last}.") else k): v for k, v in native.items()}
    return native


# torchvision keeps ``patch_embed``, ``norm`` and ``head`` under our names; the blocks of stage i
# are ``features.{2i}.{j}`` (MLP as ``mlp.0``/``mlp.3``), its patch merging ``features.{2i+1}``.
_TV_BLOCK = re.compile(r"features\.(\d+)\.(\d+)\.(.+)")
_TV_MERGE = re.compile(r"features\.(\d+)\.(reduction|norm)\.(.+)")
_TV_MLP = {"mlp.0.": "mlp.fc1.", "mlp.3.": "mlp.fc2."}


def torchvision_to_native(state: Mapping[str, Tensor]) -> StateDict:
    out: StateDict = {}
    for key, value in state.items():
        if (m := _TV_BLOCK.fullmatch(key)) and int(m.group(1)) % 2 == 0:
            rest = m.group(3)
            for old, new in _TV_MLP.items():
                if rest.startswith(old):
                    rest = new + rest[len(old) :]
            out[f"layers.{int(m.group(1)) // 2}.blocks.{m.group(2)}.{rest}"] = value
        elif (m := _TV_MERGE.fullmatch(key)) and int(m.group(1)) % 2 == 1:
            out[f"layers.{int(m.group(1)) // 2}.downsample.{m.group(2)}.{m.group(3)}"] = value
        else:
            out[key] = value  # patch_embed.*, norm.*, head.* are already native; others stay unplaced
    return out


def native_to_torchvision(state: Mapping[str, Tensor]) -> StateDict:
    out: StateDict = {}
    for key, value in state.items():
        if m := re.fullmatch(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)", key):
            rest = m.group(3).replace("mlp.fc1.", "mlp.0.").replace("mlp.fc2.", "mlp.3.")
            out[f"features.{2 * int(m.group(1))}.{m.group(2)}.{rest}"] = value
        elif m := re.fullmatch(r"layers\.(\d+)\.downsample\.(.+)", key):
            out[f"features.{2 * int(m.group(1)) + 1}.{m.group(2)}"] = value
        else:
            out[key] = value
    return out


def native_to_official(state: Mapping[str, Tensor]) -> StateDict:
    return {
        ("cls_head.fc_cls." + k[len("head.") :]) if k.startswith("head.") else "backbone." + k: v
        for k, v in state.items()
    }


_TO_NATIVE: dict[str, Callable[[Mapping[str, Tensor]], StateDict]] = {
    "official": official_to_native,
    "mmaction2": mmaction2_to_native,
    "torchvision": torchvision_to_native,
    "native": dict,
}


def to_native(state: Mapping[str, Tensor]) -> tuple[StateDict, str]:
    """Any known layout -> (native state dict, layout name).

    Keys that all start with one prefix no layout uses (``encoder.``, ``teacher.``: a wrapper
    we do not know by name) are tried without it, up to three levels."""
    try:
        layout = detect_layout(state)
    except CheckpointError:
        inner = _strip_common_prefix(state)
        for _ in range(3):
            if inner is None:
                break
            with suppress(CheckpointError):
                layout = detect_layout(inner)
                return _drop_derived(_TO_NATIVE[layout](inner)), layout
            inner = _strip_common_prefix(inner)
        raise
    return _drop_derived(_TO_NATIVE[layout](state)), layout


def _strip_common_prefix(state: Mapping[str, Tensor]) -> StateDict | None:
    """``state`` without the first dotted component when every key has the same one, else None."""
    firsts = {key.split(".", 1)[0] for key in state}
    if len(firsts) != 1 or not all("." in key for key in state):
        return None
    return {key.split(".", 1)[1]: value for key, value in state.items()}


# --- architecture -----------------------------------------------------------------------------


def _window_from_table(table_len: int, saved_index: Tensor | None) -> tuple[int, int, int]:
    """Window (d, h, w) with (2d-1)(2h-1)(2w-1) == table_len.

    A relative_position_index that came with the checkpoint (the official code saves it) settles
    the window: its values are the window's, whatever its shape; one no window gives is refused.
    Without one, windows are taken as square (every released model's is) and the spatial window 7
    of the released models is preferred; another is taken only when it is the one window (of at
    least 2x2) that fits, and an ambiguous table is refused: a wrong window gives wrong numbers
    without any error.
    """
    if saved_index is not None:
        return _window_from_index(table_len, saved_index)
    candidates = []
    for w in range(1, 65):
        spatial = (2 * w - 1) ** 2
        if table_len % spatial:
            continue
        depth_span = table_len // spatial
        if depth_span % 2 == 1:
            candidates.append(((depth_span + 1) // 2, w, w))
    candidates = [c for c in candidates if c[1] >= 2]  # a 1x1 spatial window is no Swin
    if not candidates:
        raise CheckpointError(f"cannot infer the attention window from a position-bias table of {table_len} rows")
    preferred = [c for c in candidates if c[1] == 7]
    if preferred or len(candidates) == 1:
        return (preferred or candidates)[0]
    shown = " or ".join("x".join(map(str, c)) for c in candidates[:4])
    raise CheckpointError(
        f"cannot tell the attention window from a position-bias table of {table_len} rows (it fits {shown}) "
        "and the file has no relative_position_index to settle it; save the checkpoint with those buffers, "
        "as the official code does, or with vswin_cli.checkpoints.save_native"
    )


def _window_from_index(table_len: int, saved: Tensor) -> tuple[int, int, int]:
    """The window whose relative_position_index is ``saved``. Its size alone does not settle it:
    (7,7,2) and (2,7,7) have the same table length and token count, and other indices."""
    tokens = int(saved.shape[0]) if saved.ndim == 2 and saved.shape[0] == saved.shape[1] else -1
    divisors = {d for i in range(1, math.isqrt(table_len) + 1) if table_len % i == 0 for d in (i, table_len // i)}
    spans = sorted(d for d in divisors if d % 2)  # each side's span is 2k-1
    for depth_span in spans:
        for height_span in spans:
            width_span, rest = divmod(table_len, depth_span * height_span)
            if rest or width_span % 2 == 0:
                continue
            window = ((depth_span + 1) // 2, (height_span + 1) // 2, (width_span + 1) // 2)
            if window[0] * window[1] * window[2] == tokens and torch.equal(
                    relative_position_index(window), saved.to(torch.long)):
                return window
    raise CheckpointError(
        f"the checkpoint's relative_position_index ({'x'.join(map(str, saved.shape))}) is that of no attention "
        f"window with a position-bias table of {table_len} rows: a damaged or foreign checkpoint"
    )


def infer_config(native: Mapping[str, Tensor], saved_index: Tensor | None = None) -> SwinConfig:
    """The architecture of a native state dict, from its tensor shapes (and the saved
    relative_position_index, when there is one: ``_saved_index``)."""
    try:
        proj = native["patch_embed.proj.weight"]
        if proj.ndim != 5:  # (C, in, d, h, w); an image Swin's is (C, in, h, w)
            raise CheckpointError(
                f"not a Video Swin checkpoint: its patch embedding has {proj.ndim} dimensions, not 5 "
                "(an image Swin Transformer's checkpoint?)"
            )
        embed_dim, in_channels = int(proj.shape[0]), int(proj.shape[1])
        patch = tuple(int(s) for s in proj.shape[2:])
        depths: list[int] = []
        heads: list[int] = []
        stage = 0
        while f"layers.{stage}.blocks.0.norm1.weight" in native:
            count = 0
            while f"layers.{stage}.blocks.{count}.norm1.weight" in native:
                count += 1
            depths.append(count)
            heads.append(int(native[f"layers.{stage}.blocks.0.attn.relative_position_bias_table"].shape[1]))
            stage += 1
        if not depths:
            raise KeyError("layers.0.blocks.0")
        table = native["layers.0.blocks.0.attn.relative_position_bias_table"]
        window = _window_from_table(int(table.shape[0]), saved_index)
        hidden = [int(native[f"layers.{i}.blocks.0.mlp.fc1.weight"].shape[0]) for i in range(len(depths))]
        head = native.get("head.weight")
        num_classes = int(head.shape[0]) if head is not None else 0
    except KeyError as error:
        raise CheckpointError(f"not a complete Video Swin checkpoint: missing {error.args[0]}") from error
    try:
        return SwinConfig(
            embed_dim=embed_dim,
            depths=tuple(depths),
            num_heads=tuple(heads),
            window_size=window,
            patch_size=patch,  # type: ignore[arg-type]
            num_classes=num_classes,
            mlp_ratio=_mlp_ratio(hidden, [embed_dim << stage for stage in range(len(hidden))]),
            in_channels=in_channels,
            patch_norm="patch_embed.norm.weight" in native,
        )
    except ValueError as error:  # shapes no Video Swin has (e.g. 16 channels in 3 heads)
        raise CheckpointError(f"not a Video Swin checkpoint vswin can build: {error}") from None


def _mlp_ratio(hidden: Sequence[int], dims: Sequence[int]) -> float:
    """The ratio the model was made with, which gives each stage's hidden size as ``int(dim * ratio)``
    (the official code's rule): 86/32 = 2.6875 gives 344 of 128 channels where 2.7 gave 345. The
    plainest such number is taken (4.0, not 4.0005); none at all leaves stage 0's, and loading then
    names the tensor whose shape differs."""
    exact = hidden[0] / dims[0]
    low = max(h / d for h, d in zip(hidden, dims))
    high = min((h + 1) / d for h, d in zip(hidden, dims))
    for ratio in (*(round(exact, digits) for digits in (1, 2, 3, 4)), exact, (low + high) / 2):
        if ratio > 0 and all(int(d * ratio) == h for h, d in zip(hidden, dims)):
            return ratio
    return exact


def _saved_index(state: Mapping[str, Tensor]) -> Tensor | None:
    """A relative_position_index the checkpoint holds (every block's is its model's window's)."""
    for key, value in state.items():
        if key.endswith("relative_position_index") and value.ndim == 2:
            return value
    return None


def build_model(native: Mapping[str, Tensor], config: SwinConfig) -> VideoSwin:
    """A model of ``config`` holding exactly the tensors of ``native`` (every key placed, every shape right)."""
    if config.in_channels != 3:
        # The pipeline gives RGB frames only: such a model would load, then fail on every video.
        raise CheckpointError(
            f"the model takes {config.in_channels} input channel(s) per frame; vswin feeds it RGB video (3 channels)"
        )
    for key, tensor in native.items():
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.device.type != "cpu":
            raise CheckpointError(f"checkpoint tensor {key} is a {tensor.layout} {tensor.device.type} tensor"
                                  f"{' (quantized)' if tensor.is_quantized else ''}, not plain weights: a damaged or foreign checkpoint")
        if not tensor.is_floating_point():
            # Every tensor a Video Swin keeps is real-valued (its integer index buffers are not kept);
            # integers cast to float would run as other weights.
            raise CheckpointError(f"checkpoint tensor {key} holds {str(tensor.dtype).removeprefix('torch.')} values, "
                                  "not real numbers: a damaged or foreign checkpoint")
    # Shapes first, on a model without storage: an architecture far larger than its tensors (from
    # damaged metadata) is refused here, not after taking gigabytes.
    expected = _meta_model(config).state_dict()
    qkv_biases = [key for key in expected if key.endswith(".attn.qkv.bias")]
    if qkv_biases and not any(key in native for key in qkv_biases):
        # The official backbone built with qkv_bias=False: a zero bias is the same arithmetic.
        native = {**native, **{key: torch.zeros(expected[key].shape) for key in qkv_biases}}
    unplaced = sorted(set(native) - set(expected))
    missing = sorted(set(expected) - set(native))
    if unplaced or missing:
        parts = []
        if unplaced:
            parts.append(f"{len(unplaced)} key(s) it could not place, e.g. {', '.join(unplaced[:4])}")
        if missing:
            parts.append(f"{len(missing)} key(s) missing, e.g. {', '.join(missing[:4])}")
        raise CheckpointError("checkpoint does not fit Video Swin: " + "; ".join(parts))
    for key, tensor in native.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"checkpoint tensor {key} has shape {tuple(tensor.shape)}, expected {tuple(expected[key].shape)}"
            )
    model = _built(config)
    model.load_state_dict({k: v.float() for k, v in native.items()}, strict=True)
    return model.eval()


def _built(config: SwinConfig) -> VideoSwin:
    with hidden_warnings(_EMPTY_HEAD_NOTE) if config.num_classes == 0 else nullcontext():
        model = VideoSwin(config)
    if config.num_classes == 0:
        model.head = torch.nn.Identity()  # type: ignore[assignment]
    return model


def _meta_model(config: SwinConfig) -> VideoSwin:
    try:
        with torch.device("meta"):
            return _built(config)
    except (RuntimeError, OverflowError, ValueError, TypeError) as error:  # sizes torch cannot even describe (1e30)
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]  # not torch's C++ frames
        raise CheckpointError(f"the architecture the checkpoint describes cannot be built ({first})") from None


def model_from_state_dict(state: Mapping[str, Any], config: SwinConfig | None = None) -> VideoSwin:
    """A Video Swin model (eval mode) from a state dict in any known layout."""
    tensors = unwrap_state_dict(state)
    native, _ = to_native(tensors)
    return build_model(native, config or infer_config(native, _saved_index(tensors)))


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Read a checkpoint file of any known layout into a model, with its labels if it carries them."""
    path = Path(path)
    before = file_identity(path)
    raw, metadata = read_checkpoint(path)
    tensors = unwrap_state_dict(raw)
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors: not a model checkpoint")
    native, layout = to_native(tensors)
    native_file = metadata.get("format") == NATIVE_FORMAT
    config = None
    if native_file and "config" in metadata:
        try:
            config = SwinConfig.from_dict(json.loads(metadata["config"]))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
            raise CheckpointError(f"{path} has an architecture in its metadata that is not one ({error})") from None
    model = build_model(native, config or infer_config(native, _saved_index(tensors)))
    labels = _metadata_labels(path, metadata.get("labels"), strict=native_file)
    model.labels = labels
    protocol = None
    if metadata.get("format") == NATIVE_FORMAT and metadata.get("protocol"):
        from .registry import parse_protocol

        try:
            protocol = parse_protocol(json.loads(metadata["protocol"]), f"{path} metadata")
        except (ValueError, TypeError, AttributeError, RecursionError) as error:
            raise CheckpointError(f"{path} has a protocol in its metadata that is not one ({error})") from None
    sha256 = file_sha256(path)
    if file_identity(path) != before:
        # The weights read and the file hashed would differ (`vswin convert` or a copy finishing
        # meanwhile): records and sidecars would name a checkpoint that did not make their numbers.
        raise CheckpointError(f"{path} was replaced or changed while it was being loaded; run again once "
                              "whatever writes it has finished")
    return LoadedCheckpoint(
        model=model, layout=layout, sha256=sha256, labels=labels, metadata=metadata, protocol=protocol
    )


def _metadata_labels(path: Path, text: str | None, strict: bool) -> list[str] | None:
    """The class names a safetensors file's metadata holds (a JSON list of strings, as
    ``save_native`` writes). Another tool's file may mean something else by the key: what is not
    such a list is ignored there, and refused in a vswin file."""
    if not text:
        return None
    try:
        labels = json.loads(text)
    except (ValueError, RecursionError):  # (nested past Python's recursion limit: no list of names)
        labels = None
    if isinstance(labels, list) and all(isinstance(label, str) for label in labels):
        return labels
    if strict:
        raise CheckpointError(f"{path} has class names in its metadata that are not a JSON list of strings")
    return None


def save_native(
    model: VideoSwin,
    destination: str | Path,
    labels: list[str] | None = None,
    source_sha256: str | None = None,
    protocol: Protocol | None = None,
) -> Path:
    """Write the native layout as safetensors, with architecture, labels, test protocol and source
    hash as metadata. The file appears whole or not at all (a temporary file beside it, renamed);
    a destination that cannot be written is a VswinError (exit 1)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    from .atomic_files import atomic_path

    destination = Path(destination)
    metadata = {"format": NATIVE_FORMAT, "config": json.dumps(model.config.as_dict())}
    if labels is not None:
        metadata["labels"] = json.dumps(list(labels), ensure_ascii=False)
    if source_sha256:
        metadata["source_sha256"] = source_sha256
    if protocol is not None:
        metadata["protocol"] = json.dumps(protocol.as_dict())
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if destination.is_dir():
        raise VswinError(f"{destination} is a folder; give a file name ending in .safetensors")
    try:
        # Through a symbolic link (models/current.safetensors -> ...) the target is rewritten, as
        # ``-o`` does.
        with atomic_path(destination) as temp:
            save_file(tensors, temp, metadata=metadata)
    except (OSError, SafetensorError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise VswinError(f"cannot write {destination}: {reason[:1].lower() + reason[1:]}", exit_code=1) from None
    return destination
