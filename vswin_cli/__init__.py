"""vswin: video classification and features with the Video Swin Transformer.

    import vswin_cli
    model = vswin_cli.load_model("swin-t-k400")   # or hf://..., or a checkpoint path
    logits = model(x)                             # x: (B, 3, T, H, W), normalised
    feats = model.forward_features(x)             # (B, C) pooled features
    records = vswin_cli.classify(["a.mp4"])
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_model", "classify", "extract_features", "VswinError", "__version__"]

from .errors import VswinError


def __getattr__(name: str) -> Any:
    # Lazy, so that `vswin --help` and light imports do not pay for torch up front.
    if name == "load_model":
        from .loading import load_model

        return load_model
    if name in ("classify", "extract_features"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'vswin_cli' has no attribute {name!r}")


def __dir__() -> list[str]:
    # The lazy names too, so that tab completion in notebooks offers them.
    return sorted(set(globals()) | set(__all__))
