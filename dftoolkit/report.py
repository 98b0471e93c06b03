"""A static report: one HTML page (``report.html``) and the same content as Markdown (``report.md``).

The caller assembles :class:`Section` objects (prose, :class:`Table` s, :class:`Figure` s and the
command that reproduces the section on a real corpus) and :func:`write_report` renders both files:

>>> write_report("Demo", [Section("Quality", "Scores of 4 videos.", tables=[Table(frame)],
...                               figures=[Figure(Path("tsne.png"), "Face features, t-SNE")])],
...              Path("out"))                                                    # doctest: +SKIP
{'html': PosixPath('out/report.html'), 'markdown': PosixPath('out/report.md')}

All text is plain text: it is escaped in both files (a video id ``<script>`` shows as written, never
as markup or Markdown formatting). The page has its CSS inline, no script and no network resource;
a Content-Security-Policy meta tag forbids both. Images are copied into ``report_files/`` beside the
page and referenced relatively, or, with ``embed=True``, embedded in both files as ``data:`` URIs.

:func:`face_crop` cuts a frame to a square around its face boxes, for contact sheets where a small
face in a large frame would say nothing.
"""

from __future__ import annotations

import base64
import html
import itertools
import math
import re
import shutil
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

import dftoolkit
from dftoolkit.faces.geometry import box_matrix, warp
from dftoolkit.fileio import atomic_dir, atomic_write_text

__all__ = ["FILES_DIR", "Figure", "Section", "Table", "face_crop", "write_report"]

FILES_DIR = "report_files"
"""Folder beside the page that holds the copied images (not written with ``embed=True``)."""

_BETTER = ("higher", "lower")
_MISSING = "n/a"
# Magic bytes of the image formats every browser shows -> MIME type.
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}
_SUFFIXES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


@dataclass
class Table:
    """A table of a section.

    Attributes:
        frame: the rows and columns as shown. A non-default index (named, or not a plain range) is
            shown as leading columns. Floats are shown to 4 significant digits (whole numbers from
            10 000 up), NaN and None as ``n/a``; format a column as strings beforehand to show it
            otherwise.
        caption: shown above the table as "Table N. caption".
        units: column -> unit, shown in its header: ``{"E_warp": "px"}`` gives "E_warp (px)".
        better: column -> ``"higher"`` or ``"lower"``, shown in its header: "AUC (higher is better)",
            with a unit "E_warp (px, lower is better)".
    """

    frame: pd.DataFrame
    caption: str = ""
    units: dict[str, str] = field(default_factory=dict)
    better: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.frame, pd.DataFrame):
            raise TypeError(f"Table.frame must be a pandas DataFrame, got {type(self.frame).__name__}")
        columns = {str(c) for c in _shown(self.frame).columns}
        for what, mapping in (("units", self.units), ("better", self.better)):
            unknown = sorted(set(map(str, mapping)) - columns)
            if unknown:
                raise ValueError(
                    f"table {self.caption!r}: {what} names no column {unknown}; columns: {sorted(columns)}"
                )
        bad = {c: v for c, v in self.better.items() if v not in _BETTER}
        if bad:
            raise ValueError(f"table {self.caption!r}: better must be 'higher' or 'lower', got {bad}")

    def headers(self) -> list[tuple[str, str]]:
        """Per column: its name and its note ("(px, lower is better)", or "" without unit or direction)."""
        units = {str(k): v for k, v in self.units.items()}
        better = {str(k): v for k, v in self.better.items()}
        out = []
        for column in map(str, _shown(self.frame).columns):
            notes = [units[column]] if column in units else []
            notes += [f"{better[column]} is better"] if column in better else []
            out.append((_line(column), f"({', '.join(notes)})" if notes else ""))
        return out

    def cells(self) -> list[list[str]]:
        """Rows of cell texts as shown."""
        return [[_cell(value) for value in row] for row in _shown(self.frame).itertuples(index=False)]

    def numeric(self) -> list[bool]:
        """Per column: whether it holds numbers (right-aligned)."""
        frame = _shown(self.frame)
        return [
            pd.api.types.is_numeric_dtype(frame.iloc[:, i])
            and not pd.api.types.is_bool_dtype(frame.iloc[:, i])
            for i in range(frame.shape[1])
        ]


@dataclass
class Figure:
    """An image of a section: a PNG, JPEG or WebP file; ``alt`` defaults to the caption."""

    path: Path
    caption: str
    alt: str = ""

    def __post_init__(self) -> None:
        self.path = Path(self.path)


@dataclass
class Section:
    """One section of the report, rendered in this order: text, command, tables, figures.

    Attributes:
        title: the section heading.
        text: plain-text paragraphs, separated by blank lines.
        tables: the section's tables.
        figures: the section's figures.
        command: the exact command that reproduces the section on a real corpus (a code block).
    """

    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    command: str | None = None


@dataclass(frozen=True)
class _Image:
    """A checked figure file: its bytes, MIME type, pixel size and name in ``report_files/``."""

    data: bytes
    mime: str
    width: int
    height: int
    name: str

    def src(self, embed: bool) -> str:
        """The ``src`` of the image: a ``data:`` URI, or its path relative to the page."""
        if embed:
            return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"
        return f"{FILES_DIR}/{urllib.parse.quote(self.name)}"


def write_report(
    title: str, sections: Sequence[Section], out_dir: Path, *, intro: str = "", embed: bool = False
) -> dict[str, Path]:
    """Write ``out_dir/report.html`` and ``out_dir/report.md`` from ``sections``, atomically.

    Every figure is checked first: a missing file raises :class:`FileNotFoundError` and a file that
    is not a decodable PNG, JPEG or WebP raises :class:`ValueError`, each naming the path, before
    anything is written. Figures are then copied to ``out_dir/report_files/`` as ``NN-<name>.<ext>``
    (numbered in order of appearance; a file given twice is copied once); that folder is replaced as a
    whole, and removed when ``embed=True`` or when there is no figure.

    Args:
        title: the report's title (page title and top heading).
        sections: the sections, in order.
        out_dir: folder of the outputs; created if needed.
        intro: plain-text paragraphs under the title.
        embed: put the images into both files as ``data:`` URIs (nothing beside them).

    Returns:
        ``{"html": path, "markdown": path}``.
    """
    out_dir = Path(out_dir)
    images = _check_figures(sections)
    paths = {"html": out_dir / "report.html", "markdown": out_dir / "report.md"}
    files = out_dir / FILES_DIR
    unique = {image.name: image for image in images.values()}
    if unique and not embed:
        with atomic_dir(files) as tmp:
            for image in unique.values():
                (tmp / image.name).write_bytes(image.data)
    elif files.is_dir():
        shutil.rmtree(files)
    atomic_write_text(paths["markdown"], _markdown(title, intro, sections, images, embed))
    atomic_write_text(paths["html"], _html(title, intro, sections, images, embed))
    return paths


def face_crop(image: np.ndarray, boxes: np.ndarray, size: int = 192, scale: float = 2.0) -> np.ndarray:
    """Cut ``image`` to a square around its face boxes, for contact sheets.

    The square is centred on the union of the finite boxes, ``scale`` times its longer side (the
    :func:`~dftoolkit.faces.geometry.box_matrix` crop); parts outside the image are black. A square
    larger than ``size`` is cut at full resolution, then shrunk with area averaging, so a large face
    does not alias.

    Args:
        image: ``(H, W, 3)`` uint8 RGB (or ``(H, W)`` grey).
        boxes: ``(K, 4)`` or ``(4,)`` ``x0, y0, x1, y1`` pixels; rows with NaN are ignored.
        size: side of the crop in pixels.
        scale: side of the square as a multiple of the union box's longer side.

    Returns:
        ``(size, size, 3)`` (or ``(size, size)``) with the image's dtype.

    Raises:
        ValueError: no finite box with a positive area.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    b = b[np.isfinite(b).all(axis=1)]
    union = np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()]) if len(b) else None
    if union is None or min(union[2] - union[0], union[3] - union[1]) <= 0:
        raise ValueError(
            f"face_crop needs a finite box with a positive area, got {np.asarray(boxes).tolist()}"
        )
    side = math.ceil(scale * max(union[2] - union[0], union[3] - union[1]))
    if side <= size:
        return warp([image], box_matrix(union[None], size, scale), size)[0]
    crop = warp([image], box_matrix(union[None], side, scale), side)[0]  # at (nearly) full resolution
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).reshape(size, size, *crop.shape[2:])


def _check_figures(sections: Sequence[Section]) -> dict[int, _Image]:
    """``id(figure)`` -> its checked image, named ``NN-<stem>.<ext>`` in order of first appearance."""
    images: dict[int, _Image] = {}
    by_file: dict[Path, _Image] = {}
    for figure in (f for s in sections for f in s.figures):
        source = figure.path.resolve()
        if source not in by_file:
            if not source.is_file():
                raise FileNotFoundError(f"figure {str(figure.path)!r} ({figure.caption!r}): no such file")
            data = source.read_bytes()
            mime = _mime(data)
            decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if mime else None
            if decoded is None or decoded.size == 0:
                raise ValueError(
                    f"figure {str(figure.path)!r}: not a readable PNG, JPEG or WebP image (a browser "
                    "could not show it)"
                )
            stem = re.sub(r"[^A-Za-z0-9_-]+", "-", source.stem)[:48].strip("-") or "figure"
            name = f"{len(by_file) + 1:02d}-{stem}{_SUFFIXES[mime]}"
            by_file[source] = _Image(data, mime, decoded.shape[1], decoded.shape[0], name)
        images[id(figure)] = by_file[source]
    return images


def _mime(data: bytes) -> str | None:
    """MIME type of image bytes from their signature; None for formats browsers do not all show."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _SIGNATURES.items() if data.startswith(magic)), None)


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a meaningful index as leading columns and multi-level columns joined by " / "."""
    plain = isinstance(frame.index, pd.RangeIndex) and frame.index.name is None
    frame = frame if plain else frame.reset_index()
    if isinstance(frame.columns, pd.MultiIndex):
        frame = frame.set_axis([" / ".join(map(str, c)) for c in frame.columns], axis=1)
    return frame


def _cell(value: object) -> str:
    """One cell's text: floats to 4 significant digits, missing values (None, NaN, NaT, NA) as ``n/a``."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return _MISSING
    if isinstance(value, float | np.floating):
        return f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"
    return _line(str(value))


def _line(text: str) -> str:
    """``text`` on one line, runs of whitespace as one space."""
    return " ".join(text.split())


def _paragraphs(text: str) -> list[str]:
    """Plain text -> paragraphs (split at blank lines), each on one line."""
    return [_line(p) for p in re.split(r"\n\s*\n", text) if p.strip()]


# --- Markdown ---------------------------------------------------------------------------------------

# Characters that start Markdown syntax or HTML anywhere in a line; ``&`` only where it would start an
# entity, and a run of ``_`` only where it could open or close emphasis (not between letters or digits).
_MD_SPECIAL = re.compile(r"[\\`*\[\]<>|~]|&(?=#?\w+;)|_+")
_MD_BLOCK_START = re.compile(r"^(?:([#+=-])|(\d+)([.)]))")


def _md(text: str) -> str:
    """Plain text as inline Markdown that renders as written (one line; no formatting, no HTML)."""
    line = _line(text)

    def escape(m: re.Match[str]) -> str:
        i, j = m.span()
        if m[0][0] == "_" and i > 0 and j < len(line) and line[i - 1].isalnum() and line[j].isalnum():
            return m[0]
        return "".join(f"\\{c}" for c in m[0])

    return _MD_SPECIAL.sub(escape, line)


def _md_block(text: str, heading: str = "") -> str:
    """A paragraph (or, with ``heading`` "#" or "##", a heading) of plain text that renders as written."""
    line = _md(text)
    if heading:  # a trailing run of "#" would close the heading
        return f"{heading} " + line.replace("#", "\\#")
    return _MD_BLOCK_START.sub(lambda m: f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}", line)


def _md_code(command: str) -> str:
    """A fenced code block longer than any run of backticks in ``command``."""
    longest = max((len(run) for run in re.findall(r"`+", command)), default=0)
    fence = "`" * max(3, longest + 1)
    body = command.strip("\n")
    return f"{fence}sh\n{body}\n{fence}"


def _md_table(table: Table, number: int) -> str:
    """A table with its caption line; numeric columns right-aligned."""
    numeric = table.numeric()
    lines = [f"**Table {number}.** {_md(table.caption)}".rstrip(), ""]
    headers = table.headers()
    if not headers:
        return "\n".join([*lines, "(no columns)"])
    lines.append("| " + " | ".join(_md(f"{name} {note}".strip()) for name, note in headers) + " |")
    lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in table.cells()]
    return "\n".join(lines)


def _markdown(
    title: str, intro: str, sections: Sequence[Section], images: dict[int, _Image], embed: bool
) -> str:
    table_no, figure_no = itertools.count(1), itertools.count(1)  # numbered over the whole report
    blocks = [_md_block(title, "#"), *map(_md_block, _paragraphs(intro))]
    for section in sections:
        blocks += [_md_block(section.title, "##"), *map(_md_block, _paragraphs(section.text))]
        if section.command:
            blocks += ["Reproduce on a real corpus:", _md_code(section.command)]
        blocks += [_md_table(t, next(table_no)) for t in section.tables]
        for figure in section.figures:
            image = images[id(figure)]
            blocks.append(f"![{_md(figure.alt or figure.caption)}]({image.src(embed)})")
            blocks.append(f"**Figure {next(figure_no)}.** {_md(figure.caption)}".rstrip())
    blocks.append(f"Written by dftoolkit {dftoolkit.__version__}.")
    return "\n\n".join(blocks) + "\n"


# --- HTML -------------------------------------------------------------------------------------------

# Nothing but the inline style and the images: no script, no network. ``file:`` lets browsers that give
# each local file its own origin (where 'self' matches nothing) show the copied images.
_CSP = "default-src 'none'; img-src 'self' data: file:; style-src 'unsafe-inline'"
_CSS = """
:root { color-scheme: light; --ink: #1b1f24; --muted: #57606a; --rule: #d0d7de; --band: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; overflow-wrap: break-word;
       font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 76rem; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; }
h1 { font-size: 1.9rem; margin: 0 0 .75rem; }
h2 { font-size: 1.4rem; margin: 2.5rem 0 .75rem; padding-bottom: .3rem;
     border-bottom: 1px solid var(--rule); }
p { max-width: 48rem; }
nav ol { margin: .5rem 0 1.5rem; padding-left: 1.5rem; }
a { color: #0550ae; }
code, pre { font: .9em/1.45 ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
pre { background: var(--band); border: 1px solid var(--rule); border-radius: 6px; padding: .75rem 1rem;
      overflow-x: auto; }
figure { margin: 1.25rem 0; }
figcaption { color: var(--muted); font-size: .95rem; margin: .4rem 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: .92rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--rule); padding: .35rem .6rem; text-align: left; vertical-align: top; }
th { background: var(--band); }
tbody tr:nth-child(even) td { background: #fbfcfd; }
.num { text-align: right; white-space: nowrap; }
.note { color: var(--muted); font-weight: normal; }
img { display: block; max-width: 100%; height: auto; border: 1px solid var(--rule); }
footer { margin-top: 3rem; color: var(--muted); font-size: .85rem; }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  .scroll { overflow: visible; }
  table { font-size: 8.5pt; }
  pre { white-space: pre-wrap; overflow-wrap: anywhere; }
  figure, tr, pre { break-inside: avoid; }
  h2 { break-after: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def _e(text: str) -> str:
    """``text`` escaped for HTML text and attribute values."""
    return html.escape(text, quote=True)


def _html_table(table: Table, number: int) -> str:
    """A table with its caption, in a horizontally scrolling box."""
    numeric = table.numeric()
    headers = table.headers()
    head = "".join(
        f'<th scope="col"{" class=num" if n else ""}>{_e(name)}'
        + (f' <span class="note">{_e(note)}</span>' if note else "")
        + "</th>"
        for (name, note), n in zip(headers, numeric, strict=True)
    )
    rows = "\n".join(
        "<tr>"
        + "".join(f"<td{' class=num' if n else ''}>{_e(c)}</td>" for c, n in zip(row, numeric, strict=True))
        + "</tr>"
        for row in table.cells()
    )
    caption = f"<b>Table {number}.</b> {_e(_line(table.caption))}".rstrip()
    body = (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"
        if headers
        else "<p>(no columns)</p>"
    )
    return (
        f'<figure class="table">\n<figcaption>{caption}</figcaption>\n'
        f'<div class="scroll">\n{body}\n</div>\n</figure>'
    )


def _html(title: str, intro: str, sections: Sequence[Section], images: dict[int, _Image], embed: bool) -> str:
    table_no, figure_no = itertools.count(1), itertools.count(1)  # numbered over the whole report
    parts = [f"<h1>{_e(_line(title))}</h1>", *(f"<p>{_e(p)}</p>" for p in _paragraphs(intro))]
    if len(sections) > 1:
        items = "".join(
            f'<li><a href="#section-{i}">{_e(_line(s.title))}</a></li>' for i, s in enumerate(sections, 1)
        )
        parts.append(f'<nav aria-label="Contents"><ol>{items}</ol></nav>')
    for i, section in enumerate(sections, 1):
        parts.append(f'<section id="section-{i}">\n<h2>{_e(_line(section.title))}</h2>')
        parts += [f"<p>{_e(p)}</p>" for p in _paragraphs(section.text)]
        if section.command:
            command = _e(section.command.strip("\n"))
            parts.append(f"<p>Reproduce on a real corpus:</p>\n<pre><code>{command}</code></pre>")
        parts += [_html_table(t, next(table_no)) for t in section.tables]
        for figure in section.figures:
            image = images[id(figure)]
            alt, caption = _line(figure.alt or figure.caption), _line(figure.caption)
            parts.append(
                f'<figure>\n<img src="{_e(image.src(embed))}" alt="{_e(alt)}" width="{image.width}" '
                f'height="{image.height}">\n<figcaption><b>Figure {next(figure_no)}.</b> {_e(caption)}'
                "</figcaption>\n</figure>"
            )
        parts.append("</section>")
    parts.append(f"<footer><p>Written by dftoolkit {_e(dftoolkit.__version__)}.</p></footer>")
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(_line(title))}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
