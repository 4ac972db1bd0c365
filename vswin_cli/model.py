"""The Video Swin Transformer (Liu et al., CVPR 2022): backbone and classifier head.

Numerically this is the official model (SwinTransformer3D + I3DHead of Video-Swin-Transformer):
3D patch embedding, window / shifted-window attention with the 3D relative position bias and the
shift mask, patch merging, final norm, average pool over (T, H, W), linear head. Inputs of any
size work: windows shrink to the input where it is smaller, and inputs are zero-padded to
multiples of the window, both exactly as the official code does.

How the forward spends its time on arithmetic (see benchmarks/README.md for the figures):

- Inside a stage the tokens stay laid out window after window (:class:`WindowLayout`). Every
  step but the attention is per token, so the cyclic shift, the padding and the window
  partition are a reordering of rows: one gather per block, from index tensors built once per
  input shape; patch merging gathers its 2x2 neighbours straight from that order.
- Attention is ``scaled_dot_product_attention`` with one additive mask: the relative position
  bias (cached per block) plus the shift mask. Shifted windows are grouped by shift pattern
  (at most 8) so each group's mask is a broadcast (1, heads, N, N) tensor. On CPUs with AVX-512
  or AVX2 + FMA (float32) and AVX-512 BF16 (bfloat16), 32-channel heads go through a small C kernel instead
  (:mod:`vswin_cli.attention_kernel`), which takes the shift masks as bits (``_Layout``).
- On CPUs the linear layers go through oneDNN's fused kernels (bias + GELU, bias + residual
  add) where the build has them (:func:`fused_cpu_linear_available`).
- Under ``torch.autocast`` the matmuls and the attention run in reduced precision with weights
  cast once, while the residual stream, the norms and the outputs stay float32.

The native state-dict layout is the official backbone's without its ``backbone.`` prefix, plus
``head.weight`` / ``head.bias``; ``checkpoints.py`` maps the other layouts onto it.
"""

from __future__ import annotations

import math
import numbers
import operator
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import attention_kernel
from .protocol import Protocol

Size3 = tuple[int, int, int]

# The additive value the official code puts between tokens of different shifted regions.
SHIFT_MASK_VALUE = -100.0


# The most tokens a window may hold: far above any published Video Swin (8x7x7 = 392, 16x7x7 = 784).
MAX_WINDOW_TOKENS = 2048


@dataclass(frozen=True)
class SwinConfig:
    """Architecture of one Video Swin model; everything else is in the weights."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: Size3 = (8, 7, 7)
    patch_size: Size3 = (2, 4, 4)
    num_classes: int = 400
    mlp_ratio: float = 4.0
    in_channels: int = 3
    patch_norm: bool = True

    def __post_init__(self) -> None:
        # Accept lists (from JSON / TOML) but store tuples so configs hash and compare; refuse what
        # no model can be built from (a file's metadata may say anything) with a ValueError.
        def whole(name: str, value: Any, least: int) -> int:
            try:
                number = operator.index(value) if not isinstance(value, bool) else None  # ints, NumPy's too
            except TypeError:
                number = None
            if number is None or number < least:
                raise ValueError(f"{name} must be a whole number of at least {least}, not {value!r}")
            return number

        for name, length in (("depths", None), ("num_heads", None), ("window_size", 3), ("patch_size", 3)):
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values \
                    or (length is not None and len(values) != length):
                raise ValueError(f"{name} must be a list of {length or 'one or more'} whole numbers, not {values!r}")
            object.__setattr__(self, name, tuple(whole(name, v, 1) for v in values))
        for name, least in (("embed_dim", 1), ("num_classes", 0), ("in_channels", 1)):
            object.__setattr__(self, name, whole(name, getattr(self, name), least))
        ratio = self.mlp_ratio
        if isinstance(ratio, (bool, str, bytes)) or not isinstance(ratio, numbers.Real) or not (0 < ratio < math.inf):
            raise ValueError(f"mlp_ratio must be a positive number, not {ratio!r}")
        object.__setattr__(self, "mlp_ratio", float(ratio))
        if not isinstance(self.patch_norm, bool):
            raise ValueError(f"patch_norm must be true or false, not {self.patch_norm!r}")
        if len(self.depths) != len(self.num_heads):
            raise ValueError("depths and num_heads must have one entry per stage")
        for stage, heads in enumerate(self.num_heads):
            if (self.embed_dim << stage) % heads:
                raise ValueError(f"stage {stage}'s {self.embed_dim << stage} channels do not split into {heads} heads")
        tokens = math.prod(self.window_size)
        if tokens > MAX_WINDOW_TOKENS:
            # Each block keeps a (tokens x tokens) index: 0.7 GB per block at 21x21x21.
            raise ValueError(f"window_size {list(self.window_size)} holds {tokens} tokens; Video Swin windows hold "
                             f"at most {MAX_WINDOW_TOKENS} here (the official ones 392 or 784)")

    @property
    def num_features(self) -> int:
        """Channels of the pooled features the head sees."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SwinConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})


def swin_t(num_classes: int = 400, window_size: Size3 = (8, 7, 7)) -> "VideoSwin":
    return VideoSwin(SwinConfig(96, (2, 2, 6, 2), (3, 6, 12, 24), window_size, num_classes=num_classes))


def swin_s(num_classes: int = 400, window_size: Size3 = (8, 7, 7)) -> "VideoSwin":
    return VideoSwin(SwinConfig(96, (2, 2, 18, 2), (3, 6, 12, 24), window_size, num_classes=num_classes))


def swin_b(num_classes: int = 400, window_size: Size3 = (8, 7, 7)) -> "VideoSwin":
    return VideoSwin(SwinConfig(128, (2, 2, 18, 2), (4, 8, 16, 32), window_size, num_classes=num_classes))


def swin_l(num_classes: int = 400, window_size: Size3 = (8, 7, 7)) -> "VideoSwin":
    return VideoSwin(SwinConfig(192, (2, 2, 18, 2), (6, 12, 24, 48), window_size, num_classes=num_classes))


# --- pure shape logic -------------------------------------------------------------------------


def effective_window(size: Size3, window: Size3, shift: Size3) -> tuple[Size3, Size3]:
    """The window and shift used for a feature map of ``size``.

    Where the input is no larger than the window, the window shrinks to the input and that
    dimension is not shifted (official ``get_window_size``).
    """
    use_window = tuple(s if s <= w else w for s, w in zip(size, window))
    use_shift = tuple(0 if s <= w else sh for s, w, sh in zip(size, window, shift))
    return use_window, use_shift  # type: ignore[return-value]


def padded_size(size: Size3, window: Size3) -> Size3:
    return tuple(math.ceil(s / w) * w for s, w in zip(size, window))  # type: ignore[return-value]


def relative_position_index(window: Size3) -> Tensor:
    """(N, N) index into the bias table for every pair of tokens of a full window, N = prod(window)."""
    wd, wh, ww = window
    grid = torch.stack(torch.meshgrid(torch.arange(wd), torch.arange(wh), torch.arange(ww), indexing="ij"))
    coords = grid.flatten(1)  # (3, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (3, N, N): offsets between token pairs
    rel[0] += wd - 1
    rel[1] += wh - 1
    rel[2] += ww - 1
    return rel[0] * (2 * wh - 1) * (2 * ww - 1) + rel[1] * (2 * ww - 1) + rel[2]


def window_partition(x: Tensor, window: Size3) -> Tensor:
    """(B, D, H, W, C) -> (B * nW, N, C), windows in (d, h, w) raster order."""
    b, d, h, w, c = x.shape
    wd, wh, ww = window
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, wd * wh * ww, c)


def window_reverse(windows: Tensor, window: Size3, batch: int, size: Size3) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nW, N, C) -> (B, D, H, W, C)."""
    d, h, w = size
    wd, wh, ww = window
    x = windows.view(batch, d // wd, h // wh, w // ww, wd, wh, ww, -1)
    return x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(batch, d, h, w, -1)


def shift_region_mask(size: Size3, window: Size3, shift: Size3, device: torch.device | None = None) -> Tensor:
    """Additive mask (nW, N, N) that keeps shifted windows from mixing regions that are not adjacent.

    ``size`` is the padded feature size. Tokens are labelled by the region they came from
    before the cyclic shift (three bands per dimension, as in the official ``compute_mask``);
    pairs with different labels get -100.
    """
    labels = torch.zeros(size, device=device)
    bands = [
        (slice(0, -w), slice(-w, -s if s else None), slice(-s, None) if s else slice(0, None))
        if s
        else (slice(0, None),)
        for w, s in zip(window, shift)
    ]
    region = 0
    for bd in bands[0]:
        for bh in bands[1]:
            for bw in bands[2]:
                labels[bd, bh, bw] = region
                region += 1
    windows = window_partition(labels[None, ..., None], window).squeeze(-1)  # (nW, N)
    different = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(different.shape, device=device).masked_fill_(different, SHIFT_MASK_VALUE)


def shift_patterns(window: Size3, shift: Size3) -> Tensor:
    """The distinct shift masks of a shifted-window layout: (P, N, N), P = 2 ** (shifted dims).

    A window's shift mask depends only on whether it is the last window along each shifted
    dimension (only there do tokens from the far side of the cyclic shift arrive), so a grid of
    two windows per shifted dimension holds every pattern; pattern ``p`` is window ``p`` of that
    grid, and :func:`window_pattern` gives the pattern of any window of a larger grid.
    """
    small = tuple(2 * w if s else w for w, s in zip(window, shift))
    return shift_region_mask(small, window, shift)  # type: ignore[arg-type]


def window_pattern(grid: Size3, shift: Size3) -> Tensor:
    """(nW,) index into :func:`shift_patterns` of every window of a ``grid`` of windows (raster order)."""
    nd, nh, nw = grid
    a, b, c = torch.meshgrid(torch.arange(nd), torch.arange(nh), torch.arange(nw), indexing="ij")
    last = [(i == n - 1) & bool(s) for i, n, s in zip((a, b, c), grid, shift)]
    small = [2 if s else 1 for s in shift]
    return (last[0].long() * small[1] * small[2] + last[1].long() * small[2] + last[2].long()).flatten()


@dataclass(frozen=True)
class WindowLayout:
    """The tokens of a batch laid out window after window, as one block's attention reads them.

    Slot ``i`` holds token ``tokens[i]`` (flat index ``b * D*H*W + raster index``) of the
    padded, cyclically shifted feature map; padding slots hold token 0 and ``real`` is False
    there (their values are zeroed before attention, as the official zero padding is).
    ``groups`` are runs of windows attended with one call: (first window, end window, first
    mask, end mask), the masks being rows of ``shift_masks`` (M, N, N) added to the position
    bias; first mask -1 means the bias alone.
    """

    tokens: Tensor
    real: Tensor
    groups: tuple[tuple[int, int, int, int], ...]
    shift_masks: Tensor | None


def window_layout(batch: int, size: Size3, window: Size3, shift: Size3, by_pattern: bool | None = None) -> WindowLayout:
    """Slots for ``batch`` feature maps of ``size`` in windows of ``window`` rolled back by ``shift``.

    Shifted windows are attended either grouped by shift pattern (windows sharing a pattern
    made consecutive, one call per pattern with a broadcast (1, heads, N, N) mask: the fused
    kernel's fast path, and masks of P * heads * N * N rather than windows * heads * N * N), or,
    when there are few windows per pattern (``by_pattern`` None: fewer than 4), in raster
    order, one call per batch element with one mask per window.
    """
    d, h, w = size
    padded = padded_size(size, window)
    grid: Size3 = tuple(p // wn for p, wn in zip(padded, window))  # type: ignore[assignment]
    positions = torch.arange(padded[0] * padded[1] * padded[2]).view(padded)
    if any(shift):
        positions = torch.roll(positions, shifts=tuple(-s for s in shift), dims=(0, 1, 2))
    slots = window_partition(positions[None, ..., None], window).squeeze(-1)  # (nW, N) padded positions
    pd, ph, pw = slots // (padded[1] * padded[2]), slots // padded[2] % padded[1], slots % padded[2]
    real = (pd < d) & (ph < h) & (pw < w)
    flat = torch.where(real, (pd * h + ph) * w + pw, 0)
    num_windows = flat.shape[0]
    offsets = torch.arange(batch)[:, None, None] * (d * h * w)

    def batched(chosen: Tensor) -> tuple[Tensor, Tensor]:
        return (offsets + flat[chosen]).flatten(), real[chosen].expand(batch, -1, -1).flatten()

    if not any(shift):
        tokens, reals = batched(torch.ones(num_windows, dtype=torch.bool))
        return WindowLayout(tokens, reals, ((0, batch * num_windows, -1, -1),), None)
    patterns = shift_patterns(window, shift)
    if by_pattern is None:
        by_pattern = num_windows >= 4 * patterns.shape[0]
    if not by_pattern:
        tokens, reals = batched(torch.ones(num_windows, dtype=torch.bool))
        groups = tuple((i * num_windows, (i + 1) * num_windows, 0, num_windows) for i in range(batch))
        return WindowLayout(tokens, reals, groups, shift_region_mask(padded, window, shift))
    pattern = window_pattern(grid, shift)
    pieces, group_list, start = [], [], 0
    for p in torch.unique(pattern).tolist():
        chosen = pattern == p
        pieces.append(batched(chosen))
        count = batch * int(chosen.sum())
        group_list.append((start, start + count, p, p + 1))
        start += count
    tokens = torch.cat([t for t, _ in pieces])
    reals = torch.cat([r for _, r in pieces])
    return WindowLayout(tokens, reals, tuple(group_list), patterns)


def slot_of_token(layout: WindowLayout, num_tokens: int) -> Tensor:
    """(num_tokens,) the slot of every real token: the inverse of ``layout.tokens``."""
    inverse = torch.zeros(num_tokens, dtype=torch.long)
    inverse[layout.tokens[layout.real]] = torch.arange(layout.tokens.numel())[layout.real]
    return inverse


# --- kernels ------------------------------------------------------------------------------------


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The dtype autocast computes matmuls in on ``device`` now, or None when autocast is off."""
    try:
        if not torch.is_autocast_enabled(device.type):
            return None
        return torch.get_autocast_dtype(device.type)
    except TypeError:  # torch < 2.4: per-device functions
        if device.type == "cpu":
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        if device.type == "cuda":
            return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
        return None


def cpu_supports_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU has bfloat16 matmul units (AVX-512 BF16 or AMX), from /proc/cpuinfo's flags.

    False where that file does not exist (macOS, Windows): reduced precision is then only used
    when asked for.
    """
    return bool(attention_kernel.cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"})


_FUSED_CPU: bool | None = None


def fused_cpu_linear_available() -> bool:
    """Whether oneDNN's fused linear ops (linear + bias + GELU, linear + bias + residual) work here.

    They are PyTorch's own CPU kernels (what ``torch.compile`` fuses into), reached through
    ``torch.ops.mkldnn``; a one-time check on small tensors against the plain ops guards
    against builds without them or with different behaviour. ``VSWIN_EAGER=1`` turns them off.
    """
    global _FUSED_CPU
    if _FUSED_CPU is None:
        _FUSED_CPU = False
        if os.environ.get("VSWIN_EAGER", "") not in ("", "0") or not torch.backends.mkldnn.is_available():
            return False
        try:
            ops = torch.ops.mkldnn._linear_pointwise
            gen = torch.Generator().manual_seed(0)
            x, r = torch.randn(37, 24, generator=gen), torch.randn(37, 16, generator=gen)
            w, b = torch.randn(16, 24, generator=gen), torch.randn(16, generator=gen)
            with torch.inference_mode():
                ok = torch.allclose(ops(x, w, b, "gelu", [], "none"), F.gelu(F.linear(x, w, b)), atol=1e-5)
                ok &= torch.allclose(ops.binary(x, r, w, b, "add"), r + F.linear(x, w, b), atol=1e-5)
                ok &= torch.allclose(ops(x, w, b, "none", [], ""), F.linear(x, w, b), atol=1e-5)
            _FUSED_CPU = bool(ok)
        except Exception:  # op missing or refusing these inputs: the plain ops serve
            _FUSED_CPU = False
    return _FUSED_CPU


def _version(tensor: Tensor) -> int | None:
    """The in-place update counter, None for tensors made in inference mode (they have none)."""
    return None if tensor.is_inference() else tensor._version


def _params(layer: nn.Module, dtype: torch.dtype) -> tuple[Tensor, Tensor | None]:
    """(weight as a matrix, bias) of a Linear (or a Conv3d whose kernel is its stride) in ``dtype``.

    Casts are made once and kept (autocast would cast on every call); the cache follows
    in-place updates and moves of the weights, and is skipped when autograd is on.
    """
    weight: Tensor = layer.weight
    bias: Tensor | None = layer.bias
    version = _version(weight)
    if weight.dtype == dtype or torch.is_grad_enabled() or version is None:
        return weight.flatten(1).to(dtype), None if bias is None else bias.to(dtype)
    key = (dtype, weight.device, version, weight.data_ptr())
    cached = layer.__dict__.get("_vswin_cast")
    if cached is None or cached[0] != key:
        cached = (key, (weight.flatten(1).to(dtype), None if bias is None else bias.to(dtype)))
        layer.__dict__["_vswin_cast"] = cached  # a plain attribute: neither parameter nor buffer
    return cached[1]


def linear(
    layer: nn.Module, x: Tensor, dtype: torch.dtype, gelu: bool = False, residual: Tensor | None = None
) -> Tensor:
    """``residual + gelu?(layer(x))`` over the last dim, computed in ``dtype``.

    On CPUs one fused oneDNN call does the matmul, the bias and the GELU or the residual add
    where the dtypes allow; elsewhere the plain ops do, the sum going into ``residual`` in
    place when autograd is off. Exact GELU (erf) either way.
    """
    weight, bias = _params(layer, dtype)
    x = x.to(dtype)
    flat = x.reshape(-1, x.shape[-1])
    fusable = x.device.type == "cpu" and dtype in (torch.float32, torch.bfloat16) and not torch.is_grad_enabled()
    if fusable and fused_cpu_linear_available():
        ops = torch.ops.mkldnn._linear_pointwise
        if residual is not None and residual.dtype == dtype:
            y = ops.binary(flat, residual.reshape(-1, weight.shape[0]), weight, bias, "add")
            return y.view(*x.shape[:-1], -1)
        y = ops(flat, weight, bias, "gelu" if gelu else "none", [], "none" if gelu else "")
    else:
        y = F.linear(flat, weight, bias)
        if gelu:
            y = F.gelu(y)
    y = y.view(*x.shape[:-1], -1)
    if residual is None:
        return y
    return residual.add_(y) if not torch.is_grad_enabled() else residual + y


# --- modules ----------------------------------------------------------------------------------


class PatchEmbed3d(nn.Module):
    """Non-overlapping 3D patches -> tokens, channels last: (B, 3, T, H, W) -> (B, T', H', W', C).

    The convolution's kernel equals its stride, so it is one matrix product over the unfolded
    patches, several times faster on CPUs than the 3D convolution.
    """

    def __init__(self, patch_size: Size3, in_channels: int, embed_dim: int, norm: bool) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        _, _, t, h, w = x.shape
        pt, ph, pw = self.patch_size
        pad = ((pw - w % pw) % pw, (ph - h % ph) % ph, (pt - t % pt) % pt)
        if any(pad):
            x = F.pad(x, (0, pad[0], 0, pad[1], 0, pad[2]))
        b, c, t, h, w = x.shape
        patches = x.view(b, c, t // pt, pt, h // ph, ph, w // pw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
        x = linear(self.proj, patches.reshape(b, t // pt, h // ph, w // pw, c * pt * ph * pw), dtype or x.dtype)
        if self.norm is not None:
            x = self.norm(x)
        return x


class WindowAttention3d(nn.Module):
    """Multi-head self-attention inside 3D windows, with the relative position bias."""

    def __init__(self, dim: int, num_heads: int, window_size: Size3) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        table_len = (2 * window_size[0] - 1) * (2 * window_size[1] - 1) * (2 * window_size[2] - 1)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_len, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self._bias_cache: dict[tuple[Any, ...], Tensor] = {}

    def position_bias(self, num_tokens: int, dtype: torch.dtype) -> Tensor:
        """(1, heads, N, N) bias for windows of N tokens, cached until the table changes.

        For a window shrunk to a small input, the official code takes the top-left N x N block
        of the full window's index; so do we.
        """
        table = self.relative_position_bias_table
        # With autograd on, the bias must stay in the graph; inference tensors have no version.
        cacheable = not torch.is_grad_enabled() and not table.is_inference()
        key = (num_tokens, dtype, table.device, _version(table), table.data_ptr())
        bias = self._bias_cache.get(key) if cacheable else None
        if bias is None:
            index = self.relative_position_index[:num_tokens, :num_tokens].reshape(-1)
            bias = table[index].view(num_tokens, num_tokens, -1).permute(2, 0, 1).unsqueeze(0)
            bias = bias.to(dtype).contiguous()
            if cacheable:
                if len(self._bias_cache) >= 4:
                    self._bias_cache.clear()
                self._bias_cache[key] = bias
        return bias

    def forward(self, windows: Tensor, layout: "_Layout", dtype: torch.dtype, residual: Tensor) -> Tensor:
        """``residual`` + attention of ``windows`` (nW, N, C) laid out as ``layout`` says."""
        bw, n, c = windows.shape
        heads = self.num_heads
        qkv = linear(self.qkv, windows, dtype)
        if (
            layout.kernel_ready
            and c == heads * attention_kernel.HEAD_DIM
            and qkv.device.type == "cpu"
            and dtype in (torch.float32, torch.bfloat16)
            and not torch.is_grad_enabled()
            and attention_kernel.available(dtype)
        ):
            out = attention_kernel.window_attention(
                qkv.contiguous(),
                heads,
                (c // heads) ** -0.5,
                self.position_bias(n, torch.float32),
                layout.region_bits,
                layout.region_index,
                SHIFT_MASK_VALUE,
            )
            return linear(self.proj, out, dtype, residual=residual.view(bw, n, c))
        q, k, v = qkv.view(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.position_bias(n, dtype)
        shift_masks = None
        if layout.shift_masks:  # a compute dtype without its copy still gets the masks, never the bias alone
            shift_masks = layout.shift_masks.get(dtype)
            if shift_masks is None:
                shift_masks = layout.shift_masks[torch.float32].to(dtype)
        masks = bias if shift_masks is None else bias + shift_masks  # one op, every group's mask
        outputs = []
        for first, end, mask_first, mask_end in layout.groups:
            mask = bias if mask_first < 0 else masks[mask_first:mask_end]
            out = F.scaled_dot_product_attention(q[first:end], k[first:end], v[first:end], attn_mask=mask)
            outputs.append(out.transpose(1, 2))  # (windows, N, heads, dim): contiguous, the kernel's own layout
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        return linear(self.proj, out.reshape(bw, n, c), dtype, residual=residual.view(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, dtype: torch.dtype | None = None, residual: Tensor | None = None) -> Tensor:
        """``residual`` + fc2(GELU(fc1(x))), computed in ``dtype`` (default: x's)."""
        dtype = dtype or x.dtype
        return linear(self.fc2, linear(self.fc1, x, dtype, gelu=True), dtype, residual=residual)


class SwinBlock3d(nn.Module):
    """norm -> (shifted) window attention -> residual; norm -> MLP -> residual.

    Works on tokens already laid out window by window (:class:`WindowLayout`): every step but
    the attention is per token, so the cyclic shift and the window partition are only a
    reordering of rows, done by the stage with one gather per block.
    """

    def __init__(self, dim: int, num_heads: int, window_size: Size3, shifted: bool, mlp_ratio: float) -> None:
        super().__init__()
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3d(dim, num_heads, window_size)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, window_tokens: int, layout: "_Layout", dtype: torch.dtype) -> Tensor:
        """x: (slots, C) in ``layout``'s order -> the same slots after the block."""
        h = self.norm1(x)
        if layout.padding is not None:
            # Padding comes after the norm: padded tokens are zeros, and they do take part in
            # the attention (as keys), exactly as in the official code.
            h = h.masked_fill(layout.padding, 0.0)
        x = self.attn(h.view(-1, window_tokens, h.shape[-1]), layout, dtype, x).view_as(x)
        return self.mlp(self.norm2(x), dtype, residual=x)


class PatchMerging(nn.Module):
    """2x2 spatial neighbours -> one token with twice the channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        _, _, h, w, _ = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Channel order of the official code: (even, even), (odd, even), (even, odd), (odd, odd).
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], dim=-1)
        return self.reduce(x, dtype)

    def reduce(self, neighbours: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """(..., 4 * dim) neighbours in the official channel order -> (..., 2 * dim)."""
        return linear(self.reduction, self.norm(neighbours), dtype or neighbours.dtype)


@dataclass(frozen=True)
class _Layout:
    """A :class:`WindowLayout` as the blocks use it, on the model's device."""

    groups: tuple[tuple[int, int, int, int], ...]
    padding: Tensor | None  # (slots, 1) True at padding slots; None without padding
    shift_masks: dict[torch.dtype, Tensor] | None  # (M, 1, N, N) per compute dtype
    # For the CPU attention kernel (attention_kernel): whether it can take this layout, and the shift
    # masks as bits (M + 1, N, words; the last row all zeros) with each window's row (windows,).
    kernel_ready: bool = False
    region_bits: Tensor | None = None
    region_index: Tensor | None = None

    @classmethod
    def of(cls, layout: WindowLayout, device: torch.device) -> "_Layout":
        padding = None if bool(layout.real.all()) else (~layout.real)[:, None].to(device)
        masks = None
        if layout.shift_masks is not None:
            fp32 = layout.shift_masks.to(device).unsqueeze(1)
            masks = {d: fp32.to(d) for d in (torch.float32, torch.bfloat16, torch.float16, torch.float64)}
        if device.type != "cpu":
            return cls(layout.groups, padding, masks)
        if layout.shift_masks is None:
            return cls(layout.groups, padding, masks, kernel_ready=True)
        bits = attention_kernel.region_bits(layout.shift_masks, SHIFT_MASK_VALUE)
        if bits is None:
            return cls(layout.groups, padding, masks)
        count = len(bits)
        bits = torch.cat([bits, torch.zeros_like(bits[:1])])
        index = torch.full((layout.groups[-1][1],), count, dtype=torch.int32)
        for first, end, mask_first, mask_end in layout.groups:
            if mask_first < 0:
                continue  # the bias alone: the zero row
            if mask_end - mask_first == end - first:
                index[first:end] = torch.arange(mask_first, mask_end, dtype=torch.int32)
            elif mask_end - mask_first == 1:
                index[first:end] = mask_first
            else:
                return cls(layout.groups, padding, masks)
        return cls(layout.groups, padding, masks, True, bits, index)


@dataclass(frozen=True)
class _StagePlan:
    """Everything a stage needs for one input shape: its two layouts and the gathers between them."""

    window: Size3
    layouts: tuple[_Layout, _Layout]  # plain, shifted
    gather_in: Tensor  # slot of the plain layout -> raster token
    to_layout: tuple[Tensor | None, Tensor | None]  # into plain from shifted, into shifted from plain
    gather_out: Tensor  # raster token -> slot of the last block's layout
    # (B, D, H/2, W/2, 4) slots of the 2x2 neighbours patch merging joins; None for odd H or W
    gather_merged: Tensor | None

    @classmethod
    def build(
        cls, batch: int, size: Size3, window: Size3, shift: Size3, last_shifted: bool, device: torch.device
    ) -> "_StagePlan":
        num_tokens = batch * size[0] * size[1] * size[2]
        plain = window_layout(batch, size, window, (0, 0, 0))
        shifted = window_layout(batch, size, window, shift) if any(shift) else plain
        slots = [slot_of_token(plain, num_tokens), slot_of_token(shifted, num_tokens)]
        if any(shift):
            to_layout = (slots[1][plain.tokens].to(device), slots[0][shifted.tokens].to(device))
        else:
            to_layout = (None, None)
        gather_out = slots[int(last_shifted)]
        d, h, w = size
        merged = None
        if h % 2 == 0 and w % 2 == 0:
            raster = gather_out.view(batch, d, h // 2, 2, w // 2, 2)  # (b, d, i, dh, j, dw)
            # The official channel order: (dh, dw) = (0, 0), (1, 0), (0, 1), (1, 1).
            merged = raster.permute(0, 1, 2, 4, 5, 3).flatten().to(device)
        return cls(
            window=window,
            layouts=(_Layout.of(plain, device), _Layout.of(shifted, device)),
            gather_in=plain.tokens.to(device),
            to_layout=to_layout,
            gather_out=gather_out.to(device),
            gather_merged=merged,
        )


class SwinStage(nn.Module):
    """Blocks alternating plain and shifted windows, then (except the last stage) patch merging.

    The stage gathers its tokens into the plain windows' order once, moves them between the
    plain and the shifted order with one gather per block, and out again at the end (straight
    into patch merging's 2x2 neighbours where it can); the index tensors are built once per
    input shape and cached.
    """

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: Size3, mlp_ratio: float, merge: bool) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size: Size3 = tuple(w // 2 for w in window_size)  # type: ignore[assignment]
        self.blocks = nn.ModuleList(
            SwinBlock3d(dim, num_heads, window_size, shifted=bool(i % 2), mlp_ratio=mlp_ratio) for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if merge else None
        self._plans: dict[tuple[Any, ...], _StagePlan] = {}

    def plan(self, batch: int, size: Size3, device: torch.device) -> _StagePlan:
        key = (batch, size, device)
        plan = self._plans.get(key)
        if plan is None:
            window, shift = effective_window(size, self.window_size, self.shift_size)
            last_shifted = bool(self.blocks[-1].shifted) if len(self.blocks) else False
            # Constants: made outside inference mode so that autograd-tracked calls may use them too.
            with torch.inference_mode(False):
                plan = _StagePlan.build(batch, size, window, shift, last_shifted, device)
            if len(self._plans) >= 8:  # inputs of many shapes: keep the cache bounded
                self._plans.clear()
            self._plans[key] = plan
        return plan

    def forward(self, x: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """(B, D, H, W, C) -> the next stage's input; matmuls and attention in ``dtype`` (default: x's)."""
        dtype = dtype or x.dtype
        b, d, h, w, c = x.shape
        plan = self.plan(b, (d, h, w), x.device)
        window_tokens = plan.window[0] * plan.window[1] * plan.window[2]
        x = x.reshape(-1, c).index_select(0, plan.gather_in)
        current = 0
        for block in self.blocks:
            wanted = int(block.shifted)
            if wanted != current:
                index = plan.to_layout[wanted]
                if index is not None:
                    x = x.index_select(0, index)
                current = wanted
            x = block(x, window_tokens, plan.layouts[current], dtype)
        if self.downsample is not None and plan.gather_merged is not None:
            # The 2x2 neighbours go straight from window order into place: one copy, not two.
            merged = x.index_select(0, plan.gather_merged).view(b, d, h // 2, w // 2, 4 * c)
            return self.downsample.reduce(merged, dtype).to(x.dtype)
        x = x.index_select(0, plan.gather_out).view(b, d, h, w, c)
        if self.downsample is not None:
            x = self.downsample(x, dtype).to(x.dtype)
        return x


class VideoSwin(nn.Module):
    """Video Swin backbone + I3D-style head. ``forward`` gives logits, ``forward_features`` pooled features.

    Under ``torch.autocast`` the matmuls and the attention run in autocast's dtype while the
    residual stream, the norms and the pooled features stay in float32 (the model manages the
    casts itself, with its reduced-precision weights cast once).
    """

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.config = config
        # Filled by loading.load_model: what the engine needs besides the weights.
        self.labels: list[str] | None = None
        self.protocol: Protocol | None = None
        self.name: str = "custom"
        self.checkpoint_sha256: str | None = None
        c = config
        self.patch_embed = PatchEmbed3d(c.patch_size, c.in_channels, c.embed_dim, c.patch_norm)
        self.layers = nn.ModuleList(
            SwinStage(
                c.embed_dim * 2**i,
                depth,
                heads,
                c.window_size,
                c.mlp_ratio,
                merge=i < len(c.depths) - 1,
            )
            for i, (depth, heads) in enumerate(zip(c.depths, c.num_heads))
        )
        self.norm = nn.LayerNorm(c.num_features)
        self.head = nn.Linear(c.num_features, c.num_classes)
        self.eval()

    def feature_map(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> normed last-stage tokens (B, T', H', W', C)."""
        self._check_input(x)
        weights = self.norm.weight
        dtype = autocast_dtype(x.device) or weights.dtype
        with torch.autocast(x.device.type, enabled=False):
            x = self.patch_embed(x.to(weights.dtype))
            for stage in self.layers:
                x = stage(x, dtype)
            return self.norm(x)

    def _check_input(self, x: Tensor) -> None:
        """One clear error for inputs the model cannot mean: not a tensor, wrong shape, integers, empty."""
        channels = self.config.in_channels
        expected = f"a normalised float tensor (B, {channels}, T, H, W)"
        if not isinstance(x, Tensor):
            raise TypeError(f"the model takes {expected}, not {type(x).__name__}")
        shape = tuple(x.shape)
        if x.dim() != 5:
            hint = "; for one clip (C, T, H, W) add the batch dimension: x.unsqueeze(0)" if x.dim() == 4 else ""
            raise ValueError(f"the model takes {expected}, got shape {shape}{hint}")
        if shape[1] != channels:
            hint = "; channels last? use x.permute(0, 4, 1, 2, 3)" if shape[4] == channels else ""
            raise ValueError(f"the model takes {expected}, got {shape[1]} channels in shape {shape}{hint}")
        if not x.is_floating_point():
            raise TypeError(
                f"the model takes {expected}, got {x.dtype}; "
                "vswin_cli.transforms.normalize_views turns uint8 RGB frames (B, T, H, W, 3) into that"
            )
        if x.numel() == 0:
            raise ValueError(f"the model takes {expected} with no empty dimension, got shape {shape}")

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled (B, C) features: the mean over (T', H', W') of the final normed tokens."""
        return self.feature_map(x).mean(dim=(1, 2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.classify_features(self.forward_features(x))

    def classify_features(self, features: Tensor) -> Tensor:
        """Logits for pooled features (what ``forward`` applies after ``forward_features``), in float32."""
        with torch.autocast(features.device.type, enabled=False):
            return self.head(features.to(self.norm.weight.dtype))


__all__ = [
    "SwinConfig",
    "VideoSwin",
    "swin_t",
    "swin_s",
    "swin_b",
    "swin_l",
    "effective_window",
    "relative_position_index",
    "shift_region_mask",
    "window_partition",
    "window_reverse",
    "window_layout",
    "WindowLayout",
    "cpu_supports_bf16",
    "fused_cpu_linear_available",
]
