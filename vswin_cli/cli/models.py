"""`vswin models`: the registry (weights.toml) and what of it is in the cache.

vswin models
vswin models --format json
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Any

import typer

from . import _output


class ModelsFormat(str, Enum):
    table = "table"
    json = "json"


def models(
    output_format: Annotated[
        ModelsFormat, typer.Option("--format", help="A table for people, or JSON (every field of every entry).")
    ] = ModelsFormat.table,
) -> None:
    """List the pretrained checkpoints: name, architecture, dataset, top-1, size, cached or not.

    "yes (unverified)": the file is there but changed since it was verified (a copied cache gets new
    modification times); it is hashed when first used, not here.
    """
    from ..hub import cache_path_for, cache_state
    from ..registry import default_model_name, list_specs

    _output.require_stdout("send it to a file: vswin models > FILE")
    default = default_model_name()
    rows: list[dict[str, Any]] = []
    for spec in list_specs():
        state = cache_state(spec.name)
        cached = state != "missing"
        path = cache_path_for(spec)
        size = path.stat().st_size if cached and path.exists() else spec.size
        rows.append(
            {
                **spec.as_dict(),
                "default": spec.name == default,
                "cached": cached,
                "cache_state": state,
                "cache_path": str(path),
                "cached_size": size if cached else None,
            }
        )

    if output_format is ModelsFormat.json:
        print(json.dumps(rows, indent=2))
        return

    from rich.table import Table

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column, justify in (
        ("name", "left"),
        ("arch", "left"),
        ("dataset", "left"),
        ("top-1", "right"),
        ("size", "right"),
        ("cached", "left"),
    ):
        # Wrapped at spaces where a terminal is narrower than a row (80 columns is): cut, the
        # values would end in "…" ("kinetics4…", "yes (unverif…").
        table.add_column(column, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for row in rows:
        arch = row["arch"]
        table.add_row(
            row["name"] + (" (default)" if row["default"] else ""),
            f"C{arch['embed_dim']} d{'-'.join(map(str, arch['depths']))} w{'x'.join(map(str, arch['window_size']))}",
            row["label_set"],
            "-" if row["top1"] is None else f"{row['top1']:.1f}",
            _size_text(row),
            {"verified": "yes", "unverified": "yes (unverified)"}.get(row["cache_state"], "no"),
        )
    console = _output.stdout_console()
    # In a pipe Rich assumes 80 columns and would cut names short; a file has room for the whole row.
    if not console.is_terminal:
        console.width = 200
    console.print(table)


def _size_text(row: dict[str, Any]) -> str:
    exact = row["cached_size"] or row["size"]
    if exact:
        return f"{exact / 2**20:.1f} MiB"
    if row["size_mb_approx"]:
        return f"~{row['size_mb_approx']:.1f} MiB"
    return "?"
