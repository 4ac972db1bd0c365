"""Deterministic, implementation-independent weights for the parity tests.

Every tensor is drawn from its own numpy generator, seeded from a base seed and
the CRC-32 of the tensor's key, so a state dict is a pure function of
``(key, shape)`` pairs and the seed: the fixture scripts (run with torchvision or
the official code) and the tests (run with vswin_cli alone) rebuild exactly the
same numbers without sharing any file but this one.

Scales are chosen to make the parity check *sensitive*, not to mimic an
initialisation: attention logits are O(1) (q and k weights ~ 1/sqrt(fan_in)) and
the relative position bias is large enough to reorder attention, so a wrong
window, shift, mask, bias index or padding changes the outputs far beyond the
1e-4 tolerance, while LayerNorm after every stage keeps activations O(1).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence

import numpy as np

BASE_SEED = 20220613

# Buffers are rebuilt by every implementation; they are never generated.
BUFFER_SUFFIXES = ("relative_position_index", "num_batches_tracked", "attn_mask")

RELATIVE_POSITION_BIAS_STD = 0.5
NORM_WEIGHT_STD = 0.1
BIAS_STD = 0.05


def is_buffer(key: str) -> bool:
    """Whether ``key`` names a buffer the generator does not produce."""
    return key.endswith(BUFFER_SUFFIXES)


def tensor_for(key: str, shape: Sequence[int], seed: int = BASE_SEED) -> np.ndarray:
    """The float32 tensor for ``key`` with ``shape``, independent of any other key."""
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    noise = rng.standard_normal(shape)
    if key.endswith("relative_position_bias_table"):
        values = RELATIVE_POSITION_BIAS_STD * noise
    elif len(shape) >= 2:
        # Linear (out, in) or Conv3d (out, in, kd, kh, kw): unit-gain fan-in scaling.
        fan_in = int(np.prod(shape[1:]))
        values = noise / np.sqrt(fan_in)
    elif key.endswith("weight"):
        # The only 1-d weights in the model are LayerNorm scales.
        values = 1.0 + NORM_WEIGHT_STD * noise
    elif key.endswith("bias"):
        values = BIAS_STD * noise
    else:
        raise ValueError(f"no generation rule for {key!r} with shape {shape}")
    return values.astype(np.float32)


def make_state_dict(
    keys_and_shapes: Iterable[tuple[str, Sequence[int]]], seed: int = BASE_SEED
) -> dict[str, np.ndarray]:
    """Generate every non-buffer tensor of a state dict, in the given key order."""
    return {key: tensor_for(key, shape, seed) for key, shape in keys_and_shapes if not is_buffer(key)}


def make_input(shape: Sequence[int], seed: int) -> np.ndarray:
    """A float32 video batch (B, 3, T, H, W) ~ N(0, 1), like a normalised clip."""
    return np.random.default_rng(seed).standard_normal(tuple(shape)).astype(np.float32)


def checksum_keys(keys: Sequence[str]) -> list[str]:
    """A few keys spread over the model (first, last and some in between) to checksum."""
    keys = [k for k in keys if not is_buffer(k)]
    picks = sorted({0, len(keys) // 3, len(keys) // 2, (2 * len(keys)) // 3, len(keys) - 1})
    return [keys[i] for i in picks]


def checksum(tensor: np.ndarray) -> float:
    """Float64 sum of a tensor: cheap fingerprint that notices any change in the stream."""
    return float(np.asarray(tensor, dtype=np.float64).sum())


def round_float32(array: np.ndarray) -> list:
    """float32 values as JSON-friendly floats with 9 significant digits (exact round trip)."""
    return np.vectorize(lambda v: float(f"{v:.9g}"), otypes=[object])(np.asarray(array, np.float32)).tolist()


def generator_settings() -> dict:
    return {
        "base_seed": BASE_SEED,
        "relative_position_bias_std": RELATIVE_POSITION_BIAS_STD,
        "norm_weight_std": NORM_WEIGHT_STD,
        "bias_std": BIAS_STD,
    }


def relative_position_index(window: Sequence[int]) -> np.ndarray:
    """The (N, N) buffer both references store, N = Wd*Wh*Ww, derived from the paper.

    Entry [i, j] indexes the bias table row of the offset (token i - token j), with each
    axis shifted to start at 0 and the three axes flattened in (d, h, w) order.
    """
    wd, wh, ww = (int(w) for w in window)
    coords = np.stack(np.meshgrid(np.arange(wd), np.arange(wh), np.arange(ww), indexing="ij")).reshape(3, -1)
    offsets = coords[:, :, None] - coords[:, None, :]
    d, h, w = offsets[0] + wd - 1, offsets[1] + wh - 1, offsets[2] + ww - 1
    return (d * (2 * wh - 1) + h) * (2 * ww - 1) + w


def torch_state_dict(model, seed: int = BASE_SEED) -> dict:
    """The generator's tensors (as torch tensors) for every key of ``model``'s state dict but buffers.

    torch is imported here only, so scripts that need nothing more than NumPy from this module
    run without it.
    """
    import torch

    keys_and_shapes = [(key, list(value.shape)) for key, value in model.state_dict().items()]
    return {key: torch.from_numpy(value) for key, value in make_state_dict(keys_and_shapes, seed).items()}


def fill_generated(model, seed: int = BASE_SEED) -> list[list]:
    """Fill any implementation's ``model`` from the generator; returns its state dict's [key, shape] list.

    Buffers (which every implementation rebuilds) are left as they are; any other key the
    generator does not fill, or fills without the model having it, is an error. For the
    reference scripts, whose models (torchvision's, the official one) name buffers their way.
    """
    keys_and_shapes = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    result = model.load_state_dict(torch_state_dict(model, seed), strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
    assert all(is_buffer(key) for key in result.missing_keys), result.missing_keys
    return keys_and_shapes


def load_generated(model):
    """``model`` with the generator's weights loaded, in eval mode."""
    model.load_state_dict(torch_state_dict(model))
    return model.eval()
