"""How a query's result is shown or saved: a table on a terminal, or CSV, JSON or Parquet."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.atomic import write_aside

TERMINAL_ROWS = 200  # rows a terminal table shows; use --format csv/json/parquet for all of them


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_result(table: pa.Table, fmt: str, output: Path | None) -> None:
    """Write ``table`` as ``fmt`` (table, csv, json, parquet) to ``output`` or standard output.

    A file is written aside and renamed into place: a failure (a full disk) leaves the old
    file, or none, never half of one."""
    if output is None:
        if fmt == "parquet":
            raise ValueError("parquet needs an output file")
        _write(table, fmt, None)
        return
    write_aside(output, lambda tmp: _write(table, fmt, tmp))


def _write(table: pa.Table, fmt: str, output: Path | None) -> None:
    if fmt == "parquet":
        pq.write_table(table, output)
        return
    if fmt == "table":
        from rich.console import Console
        from rich.table import Table

        shown = Table(show_header=True)
        for name in table.column_names:
            shown.add_column(name)
        for row in table.slice(0, TERMINAL_ROWS).to_pylist():
            shown.add_row(*(_cell(v) for v in row.values()))
        with open(output, "w") if output else contextlib.nullcontext(sys.stdout) as sink:
            console = Console(file=sink, soft_wrap=True, markup=False, highlight=False)
            console.print(shown)
            more = f"; showing the first {TERMINAL_ROWS}" if table.num_rows > TERMINAL_ROWS else ""
            console.print(f"{table.num_rows} row(s){more}")
        return
    if fmt == "csv":
        flat = (
            pa.table(
                {
                    n: (_as_json_text(c) if _nested(c.type) else c)
                    for n, c in zip(table.column_names, table.columns, strict=False)
                }
            )
            if table.num_columns
            else table
        )
        pacsv.write_csv(flat, str(output) if output else sys.stdout.buffer)
        return
    if fmt == "json":
        text = json.dumps(table.to_pylist(), default=str, ensure_ascii=False, indent=1)
        if output:
            output.write_text(text + "\n")
        else:
            print(text)
        return
    raise ValueError(f"unknown format {fmt!r}")


def _as_json_text(column: pa.ChunkedArray) -> pa.Array:
    """A list, map or struct column as JSON text (CSV has no nested values)."""
    is_map = pa.types.is_map(column.type)
    return pa.array(
        [
            None if v is None else json.dumps(dict(v) if is_map else v, default=str, ensure_ascii=False)
            for v in column.to_pylist()
        ],
        pa.string(),
    )


def _nested(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_map(t) or pa.types.is_struct(t)
