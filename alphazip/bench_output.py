"""How bench results are shown and saved: a Markdown table, CSV, JSON and two plots."""

import csv
import json
import math
from dataclasses import fields
from pathlib import Path

from .bench import Row, totals


def markdown(rows: list[Row]) -> str:
    """Per file and in total: one table row per setting, classics and limits beside them."""
    header = ("| setting | mode | bytes | bits/byte | ratio | over ideal | pack tok/s | pack KB/s | unpack tok/s "
              "| unpack KB/s | peak RSS MiB | status |\n" + "| --- | --- " + "| ---: " * 9 + "| --- |")
    out = []
    for file in _files(rows) + ["total"]:
        members = [r for r in rows if r.file == file] if file != "total" else totals(rows)
        if not members:
            continue
        original, tokens = members[0].original, max(r.tokens for r in members)
        out += [f"\n### {file} ({original:,} bytes" + (f", {tokens:,} tokens" if tokens else "") + ")\n", header]
        out += [_markdown_row(row) for row in members]
    return "\n".join(out) + "\n"


def save(rows: list[Row], folder: Path, about: dict) -> list[Path]:
    """Write results.csv, results.json, bits_per_byte.png and size_vs_speed.png under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    records = [row.record() for row in rows + totals(rows)]
    with open(folder / "results.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    (folder / "results.json").write_text(json.dumps({"about": about, "rows": records}, indent=1) + "\n")
    return [folder / "results.csv", folder / "results.json", plot_bits_per_byte(rows, folder / "bits_per_byte.png"),
            plot_size_vs_speed(rows, folder / "size_vs_speed.png")]


def load(path: Path) -> tuple[list[Row], dict]:
    """Rows and facts back from a saved results.json (per-file rows; totals are recomputed)."""
    saved = json.loads(path.read_text())
    names = {f.name for f in fields(Row)}
    rows = [Row(**{k: v for k, v in record.items() if k in names}) for record in saved["rows"] if record["file"] != "total"]
    return rows, saved["about"]


def plot_bits_per_byte(rows: list[Row], path: Path) -> Path:
    """One panel per file: every alphazip setting beside the classics and the ideal code length."""
    plt = _pyplot()
    files = _files(rows)
    figure, axes = plt.subplots(len(files), 1, figsize=(9, 0.32 * len(rows) + 1.2 * len(files)), squeeze=False)
    colors = {"classic": "0.65", "limit": "black", "alphazip": "tab:blue"}
    for axis, file in zip(axes[:, 0], files):
        members = [r for r in rows if r.file == file and r.original]
        labels = [r.setting for r in members]
        axis.barh(labels, [r.bits_per_byte for r in members],
                  color=[colors[r.kind] if r.status == "OK" else "tab:red" for r in members])
        axis.invert_yaxis()
        axis.set_title(file, fontsize=10)
        axis.set_xlabel("bits per byte (grey: classic on raw bytes, black: limits, red: FAILED)", fontsize=8)
        axis.tick_params(labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_size_vs_speed(rows: list[Row], path: Path) -> Path:
    """Total bits per byte against pack speed, for every alphazip setting and classic."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 5))
    for row in totals(rows):
        speed = row.kilobytes_per_second("pack")
        if speed is None or row.bits_per_byte is None:
            continue
        color = "0.5" if row.kind == "classic" else ("tab:red" if row.status != "OK" else "tab:blue")
        axis.scatter(speed, row.bits_per_byte, color=color)
        axis.annotate(row.setting.replace("alphazip ", ""), (speed, row.bits_per_byte), fontsize=7,
                      xytext=(3, 3), textcoords="offset points")
    axis.set_xscale("log")
    axis.set_xlabel("pack speed, KB/s (log scale)")
    axis.set_ylabel("bits per byte, all files")
    axis.set_title("Size against speed (grey: classic compressors)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _files(rows: list[Row]) -> list[str]:
    return list(dict.fromkeys(row.file for row in rows))


def _markdown_row(row: Row) -> str:
    status = "-" if row.kind == "limit" else (row.status if row.status == "OK" else f"**FAILED**: {row.reason}")
    ratio = row.size / row.original if row.original else None
    cells = [row.setting, row.mode or "-", _number(row.size, 0), _number(row.bits_per_byte, 3), _number(ratio, 3),
             _percent(row.over_ideal_percent), _number(row.tokens_per_second("pack"), 0),
             _number(row.kilobytes_per_second("pack"), 1), _number(row.tokens_per_second("unpack"), 0),
             _number(row.kilobytes_per_second("unpack"), 1), _number(row.peak_rss_mib, 0), status]
    return "| " + " | ".join(cells) + " |"


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"
