"""The files of a quality report: ``report.md``, ``report.json``, ``per_video.csv`` and the PNG plots.

Rendering only: :mod:`dftoolkit.quality.report` computes the tables; this module writes them
(atomically) as Markdown (``mean ± std (n)`` cells), JSON, CSV, box plots of the per-video scores
and image strips of the worst Mask-SSIM fakes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dftoolkit import __version__
from dftoolkit.fileio import atomic_path, atomic_write_text
from dftoolkit.manifest import Manifest
from dftoolkit.quality.audit import AUDIT_FILES, audit_markdown, write_audit
from dftoolkit.sheets import contact_sheet, write_png
from dftoolkit.video import VideoReader

if TYPE_CHECKING:
    from dftoolkit.quality.report import QualityConfig, QualityReport

__all__ = ["PLOTS", "json_value", "write_report"]

PLOTS = ("tsne.png", "distributions.png", "worst_mask_ssim.png")


def write_report(
    report: QualityReport, manifest: Manifest, config: QualityConfig, columns: Sequence[str]
) -> QualityReport:
    """Write ``report``'s files into ``report.out_dir`` (atomically) and list them in ``report.files``.

    ``columns`` are the per-video score columns, in report order.
    """
    out = report.out_dir
    per_video = report.per_video
    with atomic_path(out / "per_video.csv") as tmp:
        per_video.to_csv(tmp, index=False)
    report.files["per_video"] = out / "per_video.csv"
    if per_video[list(columns)].notna().any().any():
        _plot_distributions(out / "distributions.png", per_video, columns)
        report.files["distributions"] = out / "distributions.png"
    if per_video.mask_ssim.notna().any():
        report.files["worst"] = _worst_strips(out / "worst_mask_ssim.png", manifest, per_video)
    if report.audit is not None:
        written = write_audit(report.audit, out).files
        report.files.update({f"audit_{name}": path for name, path in written.items()})
    data = {
        "tool": f"dftoolkit {__version__}",
        "config": asdict(config),
        "backbones": report.backbones,
        "unavailable": report.unavailable,
        "datasets": report.datasets.to_dict(orient="records"),
        "methods": report.methods.to_dict(orient="records"),
        "spread": report.spread,
        "skipped": report.skipped,
        "audit": report.audit.to_dict()["rows"] if report.audit is not None else None,
    }
    atomic_write_text(out / "report.json", json.dumps(data, indent=1, default=json_value))
    atomic_write_text(out / "report.md", _markdown(report, config))
    report.files.update({"json": out / "report.json", "markdown": out / "report.md"})
    for name in (*PLOTS, *AUDIT_FILES):  # a file an earlier run wrote and this one did not would be stale
        if out / name not in report.files.values():
            (out / name).unlink(missing_ok=True)
    return report


def json_value(value: Any) -> Any:
    """``json.dumps(default=...)``: numpy scalars as numbers, paths as strings, pandas' NA as null."""
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return None if value is pd.NA else str(value)


def _plot_distributions(path: Path, per_video: pd.DataFrame, columns: Sequence[str]) -> None:
    """One box plot per per-video column, a box per (dataset, class)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    present = [name for name in columns if per_video[name].notna().any()]
    columns = min(4, len(present))
    rows = -(-len(present) // columns)
    fig = Figure(figsize=(4.5 * columns, 4 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for k, name in enumerate(present):
        ax = fig.add_subplot(rows, columns, k + 1)
        groups = [
            (f"{dataset}\n{kind}", values[name].dropna().to_numpy())
            for (dataset, kind), values in per_video.groupby(["dataset", "kind"])
            if values[name].notna().any()
        ]
        ax.boxplot([v for _, v in groups], tick_labels=[n for n, _ in groups])
        ax.tick_params(axis="x", labelsize=8)
        ax.set_title(name)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")


def _worst_strips(path: Path, manifest: Manifest, per_video: pd.DataFrame) -> Path:
    """Original | fake | mask of the middle frame of the 5 fakes with the lowest Mask-SSIM."""
    worst = per_video[per_video.mask_ssim.notna()].nsmallest(5, "mask_ssim")
    by_key = {r.key: r for r in manifest}
    rows = []
    for row in worst.itertuples():
        record = by_key[(row.dataset, row.video_id)]
        original = next(
            r for r in manifest if r.dataset == record.dataset and r.video_id == record.original_id
        )
        paths = [manifest.path_of(original), manifest.path_of(record), manifest.mask_path_of(record)]
        middle = VideoReader(paths[1]).num_frames // 2
        images = [VideoReader(p).read([middle])[0] for p in paths]
        rows.append((f"{row.mask_ssim:.3f} {row.video_id}", images))
    write_png(path, contact_sheet(rows, height=160))
    return path


def _markdown(report: QualityReport, config: QualityConfig) -> str:
    lines = [
        "# Dataset quality report",
        "",
        f"dftoolkit {__version__}. Mask-SSIM protocol `{config.protocol}`, perceptual and LPIPS over "
        f"{config.frames} frame pairs per fake (face region at {config.size} px); E_warp with "
        f"`{config.flow}` flow and landmark jitter over the first {config.temporal_frames} frames at "
        f"{config.size}x{config.size} (the flow of a fake from its original). "
        "Values are mean ± std (videos).",
        "",
    ]
    for metric, info in report.backbones.items():
        weights = (
            "torchvision's ImageNet weights"
            if info["imagenet"]
            else "weights that are NOT torchvision's ImageNet release"
        )
        line = f"- {metric} backbone: `{info['name']}`, {weights}, `{info['weights_path']}`"
        line += f" (sha256 {info['sha256']})"
        lines.append(line + (f"; **offline fallback** {info['reason']}" if info["fallback"] else ""))
    for metric, why in report.unavailable.items():
        lines.append(f"- **{metric} not computed**: {why}")
    for title, table in (
        ("Per dataset", report.datasets),
        ("Per dataset and method (fakes)", report.methods),
    ):
        lines += ["", f"## {title}", "", _md_table(table)]
    if report.spread.get("rows"):
        lines += [
            "",
            "## Feature-space spread (defined in dftoolkit.quality.spread)",
            "",
            _md_table(_spread_table(report.spread)),
        ]
    elif report.spread:
        lines += ["", "## Feature-space spread", "", report.spread.get("note", "")]
    if report.audit is not None:
        lines += ["", audit_markdown(report.audit, heading="##").rstrip("\n")]
    if report.skipped:
        lines += ["", "## Not scored", ""] + [
            f"- {key} ({metric}): {why}"
            for key, reasons in sorted(report.skipped.items())
            for metric, why in reasons.items()
        ]
    lines += ["", "Files: " + ", ".join(f"[{name}]({path.name})" for name, path in report.files.items())]
    return "\n".join(lines) + "\n"


def _spread_table(spread: dict[str, Any]) -> pd.DataFrame:
    """The spread rows with the two spaces side by side: statistic, dataset(s), class, n, features, tsne."""
    rows = pd.DataFrame(spread["rows"])
    rows["datasets"] = [
        "all" if pd.isna(g) else (g if pd.isna(o) else f"{g} vs {o}")
        for g, o in zip(rows.group, rows.other, strict=True)
    ]
    rows["class"] = ["all" if pd.isna(v) else {0: "real", 1: "fake"}.get(int(v), v) for v in rows.label]
    table = rows.pivot_table(
        index=["statistic", "datasets", "class", "n"], columns="space", values="value", sort=False
    )
    return table.reset_index().rename_axis(columns=None)


def _md_table(table: pd.DataFrame) -> str:
    """A Markdown table; ``<c>_mean``/``_std``/``_n`` triples become one ``mean ± std (n)`` column."""
    columns: list[tuple[str, Any]] = []
    for name in table.columns:
        if name.endswith(("_std", "_n")) and f"{name.rsplit('_', 1)[0]}_mean" in table.columns:
            continue
        if name.endswith("_mean"):
            base = name[: -len("_mean")]
            if table[name].notna().any():
                columns.append(
                    (base, lambda row, b=base: _mean_std(row[f"{b}_mean"], row[f"{b}_std"], row[f"{b}_n"]))
                )
            continue
        columns.append((name, lambda row, n=name: _cell(row[n])))
    header = "| " + " | ".join(name for name, _ in columns) + " |"
    rule = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(render(row) for _, render in columns) + " |" for _, row in table.iterrows()]
    return "\n".join([header, rule, *body])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "-" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def _mean_std(mean: float, std: float, n: int) -> str:
    if not n:
        return "-"
    return f"{mean:.4g}" + ("" if np.isnan(std) else f" ± {std:.2g}") + f" ({int(n)})"
