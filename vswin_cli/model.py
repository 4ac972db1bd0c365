"""The Video Swin Transformer (Liu et al., CVPR 2022): backbone and classifier head.

Numerically this is the official model (SwinTransformer3D + I3DHead of Video-Swin-Transformer):
3D patch embedding, window / shifted-window attention with the 3D relative position bias and the
shift mask, patch merging, final norm, average pool over (T, H, W), linear head. Inputs of any
size work: windows shrink to the input where it is smaller, and inputs are zero-padded to
multiples of the window, both exactly as the official code does.

Inside, tensors stay channels-last (B, T, H, W, C) from the patch embedding to the pool, so
no layout shuffles happen between stages. Everything that depends only on shapes (relative
position index, shift masks) and on the weights alone (the gathered position bias) is cached.

The native state-dict layout is the official backbone's without its ``backbone.`` prefix, plus
``head.weight`` / ``head.bias``; ``checkpoints.py`` maps the other layouts onto it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .protocol import Protocol

Size3 = tuple[int, int, int]

# The additive value the official code puts between tokens of different shifted regions.
SHIFT_MASK_VALUE = -100.0


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
        # Accept lists (from JSON / TOML) but store tuples so configs hash and compare.
        for name in ("depths", "num_heads", "window_size", "patch_size"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if len(self.depths) != len(self.num_heads):
            raise ValueError("depths and num_heads must have one entry per stage")

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


# --- modules ----------------------------------------------------------------------------------


class PatchEmbed3d(nn.Module):
    """Non-overlapping 3D patches -> tokens, channels last: (B, 3, T, H, W) -> (B, T', H', W', C)."""

    def __init__(self, patch_size: Size3, in_channels: int, embed_dim: int, norm: bool) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv3d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else None

    def forward(self, x: Tensor) -> Tensor:
        _, _, t, h, w = x.shape
        pt, ph, pw = self.patch_size
        pad = ((pw - w % pw) % pw, (ph - h % ph) % ph, (pt - t % pt) % pt)
        if any(pad):
            x = F.pad(x, (0, pad[0], 0, pad[1], 0, pad[2]))
        x = self.proj(x).permute(0, 2, 3, 4, 1)
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
        cacheable = not torch.is_grad_enabled()  # with autograd on, the bias must stay in the graph
        key = (num_tokens, dtype, table.device, table._version, table.data_ptr())
        bias = self._bias_cache.get(key) if cacheable else None
        if bias is None:
            index = self.relative_position_index[:num_tokens, :num_tokens].reshape(-1)
            bias = table[index].view(num_tokens, num_tokens, -1).permute(2, 0, 1).unsqueeze(0)
            bias = bias.to(dtype).contiguous()
            if cacheable:
                self._bias_cache.clear()
                self._bias_cache[key] = bias
        return bias

    def forward(self, windows: Tensor, shift_mask: Tensor | None, batch: int) -> Tensor:
        """windows: (B * nW, N, C); shift_mask: (nW, N, N) additive or None."""
        bw, n, c = windows.shape
        heads = self.num_heads
        qkv = self.qkv(windows).view(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B * nW, heads, N, head_dim)
        bias = self.position_bias(n, q.dtype)
        if shift_mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            # One mask per window: the fused kernel needs it at the batch size of q, so the
            # batch goes in a loop rather than repeating the mask B times.
            mask = bias + shift_mask.to(q.dtype).unsqueeze(1)  # (nW, heads, N, N)
            nw = mask.shape[0]
            if batch == 1:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            else:
                out = torch.cat(
                    [
                        F.scaled_dot_product_attention(
                            q[i * nw : (i + 1) * nw], k[i * nw : (i + 1) * nw], v[i * nw : (i + 1) * nw], attn_mask=mask
                        )
                        for i in range(batch)
                    ]
                )
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock3d(nn.Module):
    """norm -> (shifted) window attention -> residual; norm -> MLP -> residual."""

    def __init__(self, dim: int, num_heads: int, window_size: Size3, shifted: bool, mlp_ratio: float) -> None:
        super().__init__()
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3d(dim, num_heads, window_size)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, window: Size3, shift: Size3, shift_mask: Tensor | None) -> Tensor:
        """``shift`` is (0, 0, 0) and ``shift_mask`` None for plain windows."""
        b, d, h, w, _ = x.shape
        shortcut = x
        x = self.norm1(x)
        # Padding comes after the norm: padded tokens are zeros, and they do take part in the
        # attention (as keys), exactly as in the official code.
        pads = [(wn - s % wn) % wn for s, wn in zip((d, h, w), window)]
        if any(pads):
            x = F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
        size = tuple(x.shape[1:4])
        shifted = any(shift)
        if shifted:
            x = torch.roll(x, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        x = self.attn(window_partition(x, window), shift_mask, b)
        x = window_reverse(x, window, b, size)  # type: ignore[arg-type]
        if shifted:
            x = torch.roll(x, shifts=shift, dims=(1, 2, 3))
        if any(pads):
            x = x[:, :d, :h, :w]
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 spatial neighbours -> one token with twice the channels."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        _, _, h, w, _ = x.shape
        if h % 2 or w % 2:
            x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        # Channel order of the official code: (even, even), (odd, even), (even, odd), (odd, odd).
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Blocks alternating plain and shifted windows, then (except the last stage) patch merging."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: Size3, mlp_ratio: float, merge: bool) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size: Size3 = tuple(w // 2 for w in window_size)  # type: ignore[assignment]
        self.blocks = nn.ModuleList(
            SwinBlock3d(dim, num_heads, window_size, shifted=bool(i % 2), mlp_ratio=mlp_ratio) for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if merge else None
        self._mask_cache: dict[tuple[Any, ...], Tensor | None] = {}

    def shift_mask(self, size: Size3, device: torch.device) -> tuple[Size3, Size3, Tensor | None]:
        window, shift = effective_window(size, self.window_size, self.shift_size)
        key = (size, device)
        if key not in self._mask_cache:
            # A constant: made outside inference mode so that autograd-tracked calls may use it too.
            with torch.inference_mode(False):
                mask = shift_region_mask(padded_size(size, window), window, shift, device) if any(shift) else None
            self._mask_cache[key] = mask
        return window, shift, self._mask_cache[key]

    def forward(self, x: Tensor) -> Tensor:
        window, shift, mask = self.shift_mask(tuple(x.shape[1:4]), x.device)  # type: ignore[arg-type]
        no_shift: Size3 = (0, 0, 0)
        for block in self.blocks:
            x = block(x, window, shift, mask) if block.shifted else block(x, window, no_shift, None)
        if self.downsample is not None:
            x = self.downsample(x)
        return x



class VideoSwin(nn.Module):
    """Video Swin backbone + I3D-style head. ``forward`` gives logits, ``forward_features`` pooled features."""

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
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.norm(x)

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled (B, C) features: the mean over (T', H', W') of the final normed tokens."""
        return self.feature_map(x).mean(dim=(1, 2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_features(x))

    def classify_features(self, features: Tensor) -> Tensor:
        """Logits for pooled features (what ``forward`` applies after ``forward_features``)."""
        return self.head(features)


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
]
