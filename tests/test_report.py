"""The static report: both files from one list of sections, escaped, with images that load in a browser
(headless Chromium; skipped, saying why, where no Chromium binary is found), and face crops for sheets."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from markdown_it import MarkdownIt

from dftoolkit.report import FILES_DIR, Figure, Section, Table, face_crop, write_report
from dftoolkit.sheets import contact_sheet, write_png
from dftoolkit.video import VideoReader

CHROMIUM = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Each would set data-pwned on <html> if it ran as markup instead of showing as text.
HOSTILE_ID = "<script>document.documentElement.dataset.pwned='id'</script>"
HOSTILE_CAPTION = (
    "<img src=x onerror=\"document.documentElement.dataset.pwned='caption'\"> & &amp; *bold* a|b"
)
HOSTILE_COMMAND = (
    "dftoolkit quality x --out '</code></pre><script>document.documentElement.dataset.pwned=1</script>'"
)
MAGENTA = (255, 0, 255)
PROBE = """<script>
addEventListener("load", () => {
  const root = document.documentElement, images = [...document.images];
  root.dataset.images = images.length;
  root.dataset.loaded = images.filter((i) => i.complete && i.naturalWidth > 0).length;
  root.dataset.scripts = document.scripts.length;
  const width = document.querySelector("main").clientWidth;
  root.dataset.imagesFit = images.every((i) => i.getBoundingClientRect().width <= width);
  const boxes = [...document.querySelectorAll(".scroll")];
  root.dataset.wideTablesScroll = boxes.some((box) => box.scrollWidth > box.clientWidth);
  root.dataset.pageOverflows = root.scrollWidth > innerWidth;
});
</script>"""


@pytest.fixture(scope="module")
def carphone(sample, cascade) -> tuple[np.ndarray, np.ndarray]:
    """Frame 0 of carphone_pristine (144 x 176 RGB) and its face box (4,) from the default cascade."""
    frame = VideoReader(sample("carphone_pristine")).read([0])[0]
    faces = cascade.detect(frame)
    return frame, faces.boxes[faces.largest()]


@pytest.fixture
def figures(tmp_path, carphone) -> dict[str, Path]:
    """Real images in every accepted format, plus a magenta marker; a hostile file name among them."""
    frame, box = carphone
    folder = tmp_path / "figures"
    folder.mkdir()
    paths = {
        "sheet": folder / 'sheet "<b>" &.png',
        "frame": folder / "frame.jpg",
        "face": folder / "face.webp",
        "marker": folder / "marker.png",
    }
    write_png(paths["sheet"], contact_sheet([("carphone", [frame, face_crop(frame, box, 144)])], height=144))
    for key, image in (("frame", frame), ("face", face_crop(frame, box, 96))):
        ok, data = cv2.imencode(paths[key].suffix, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        assert ok
        paths[key].write_bytes(data.tobytes())
    write_png(paths["marker"], np.full((60, 240, 3), MAGENTA, np.uint8))
    return paths


def _sections(figures: dict[str, Path]) -> list[Section]:
    scores = pd.DataFrame(
        {"video_id": [HOSTILE_ID, "carphone_pristine"], "AUC": [0.912345, np.nan], "E_warp": [1.5, 22222.2]}
    )
    spread = pd.DataFrame({"frames": [32, 300]}, index=pd.Index(["srdf", "samples"], name="dataset"))
    return [
        Section(
            "Quality <of> the #1 fakes #",
            "Scores of *two* videos; E_warp is in pixels.\n\n# not a heading\n1. not a list",
            tables=[
                Table(
                    scores,
                    HOSTILE_CAPTION,
                    units={"E_warp": "px"},
                    better={"AUC": "higher", "E_warp": "lower"},
                ),
                Table(spread, "Frames per dataset"),
            ],
            figures=[
                Figure(figures["sheet"], HOSTILE_CAPTION),
                Figure(figures["frame"], "A whole frame", "frame 0"),
            ],
            command=HOSTILE_COMMAND + " ``` `x`",
        ),
        Section(
            "Markers",
            figures=[
                Figure(figures["face"], "The face, cropped"),
                Figure(figures["marker"], "Magenta"),
                Figure(figures["sheet"], "The sheet again"),
            ],
        ),
    ]


class _Content(HTMLParser):
    """What a rendered page says: headings, paragraph texts, tables, code blocks, images and scripts."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.headings, self.texts, self.codes, self.tables, self.images, self.scripts = [], [], [], [], [], 0
        self._open: dict[str, list[str]] = {}
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        elif tag == "script":
            self.scripts += 1
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        if tag in ("h1", "h2", "p", "figcaption", "pre", "th", "td"):
            self._open[tag] = []

    def handle_data(self, data):
        for parts in self._open.values():
            parts.append(data)

    def handle_endtag(self, tag):
        if tag not in self._open:
            return
        raw = "".join(self._open.pop(tag))
        text = " ".join(raw.split())
        if tag in ("h1", "h2"):
            self.headings.append(text)
        elif tag == "pre":
            self.codes.append(raw.strip("\n"))
        elif tag in ("th", "td"):
            self.tables[-1][-1].append(text)
        elif text:
            self.texts.append(text)


def _markdown_as_html(path: Path) -> str:
    """``report.md`` rendered by a CommonMark renderer with tables (raw HTML allowed, as most viewers)."""
    return MarkdownIt("commonmark").enable("table").render(path.read_text("utf-8"))


def test_markdown_and_html_hold_the_same_content(tmp_path, figures):
    sections = _sections(figures)
    paths = write_report(
        "Report </title><script>x</script>", sections, tmp_path / "out", intro="Made on *samples*."
    )
    page, markdown = (
        _Content(paths["html"].read_text("utf-8")),
        _Content(_markdown_as_html(paths["markdown"])),
    )

    assert (
        page.headings
        == markdown.headings
        == [
            "Report </title><script>x</script>",
            "Quality <of> the #1 fakes #",
            "Markers",
        ]
    )
    assert (
        page.tables
        == markdown.tables
        == [
            [
                ["video_id", "AUC (higher is better)", "E_warp (px, lower is better)"],
                [HOSTILE_ID, "0.9123", "1.5"],
                ["carphone_pristine", "n/a", "22222"],
            ],
            [["dataset", "frames"], ["srdf", "32"], ["samples", "300"]],
        ]
    )
    assert page.codes == markdown.codes == [HOSTILE_COMMAND + " ``` `x`"]
    assert sorted(page.texts) == sorted(markdown.texts)
    for text in (
        "Made on *samples*.",
        "Scores of *two* videos; E_warp is in pixels.",
        "# not a heading 1. not a list",
        f"Table 1. {HOSTILE_CAPTION}",
        f"Figure 1. {HOSTILE_CAPTION}",
        "Figure 5. The sheet again",
    ):
        assert text in page.texts
    sizes = [cv2.imread(str(figures[k])).shape[:2] for k in ("sheet", "frame", "face", "marker", "sheet")]
    assert [(int(i["height"]), int(i["width"])) for i in page.images] == sizes
    assert [(i["src"], i["alt"]) for i in page.images] == [(i["src"], i["alt"]) for i in markdown.images]
    assert [i["alt"] for i in page.images] == [
        HOSTILE_CAPTION,
        "frame 0",
        "The face, cropped",
        "Magenta",
        "The sheet again",
    ]
    assert page.scripts == markdown.scripts == 0
    assert "<script" not in paths["html"].read_text("utf-8").lower()


def test_figures_are_copied_beside_the_page_under_unique_names(tmp_path, figures):
    twin = tmp_path / "elsewhere" / "marker.png"  # figures["marker"]'s name; a JPEG: named by its content
    twin.parent.mkdir()
    shutil.copy(figures["frame"], twin)
    sections = [*_sections(figures), Section("Twin", figures=[Figure(twin, "Same name")])]
    out = tmp_path / "out"
    paths = write_report("Copies", sections, out)

    srcs = [i["src"] for i in _Content(paths["html"].read_text("utf-8")).images]
    assert srcs == [
        f"{FILES_DIR}/01-sheet-b.png",
        f"{FILES_DIR}/02-frame.jpg",
        f"{FILES_DIR}/03-face.webp",
        f"{FILES_DIR}/04-marker.png",
        f"{FILES_DIR}/01-sheet-b.png",  # the same file twice: one copy
        f"{FILES_DIR}/05-marker.jpg",
    ]
    copies = sorted((out / FILES_DIR).iterdir())
    assert [p.name for p in copies] == sorted({Path(s).name for s in srcs})
    sources = [figures["sheet"], figures["frame"], figures["face"], figures["marker"], twin]
    assert [c.read_bytes() for c in sorted(copies)] == [s.read_bytes() for s in sources]

    write_report("Copies", sections[1:2], out)  # a smaller report replaces the folder: nothing stale
    assert sorted(p.name for p in (out / FILES_DIR).iterdir()) == [
        "01-face.webp",
        "02-marker.png",
        "03-sheet-b.png",
    ]


def test_embed_puts_the_images_in_both_files(tmp_path, figures):
    out = tmp_path / "out"
    write_report("Copied first", _sections(figures), out)
    paths = write_report("Embedded", _sections(figures), out, embed=True)
    assert not (out / FILES_DIR).exists()  # the copies of the run before are gone

    page = _Content(paths["html"].read_text("utf-8"))
    markdown = _Content(_markdown_as_html(paths["markdown"]))
    order = ["sheet", "frame", "face", "marker", "sheet"]
    mimes = ["image/png", "image/jpeg", "image/webp", "image/png", "image/png"]
    for images in (page.images, markdown.images):
        assert len(images) == len(order)
        for image, key, mime in zip(images, order, mimes, strict=True):
            head, data = image["src"].split(",", 1)
            assert head == f"data:{mime};base64"
            assert base64.b64decode(data) == figures[key].read_bytes()


def test_a_missing_or_unreadable_figure_is_an_error_naming_it(tmp_path, figures):
    out = tmp_path / "out"
    paths = write_report("Good", _sections(figures), out)
    before = {p: p.read_bytes() for p in paths.values()}

    missing = tmp_path / "no such <dir>" / "tsne.png"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        write_report("Bad", [Section("S", figures=[Figure(missing, "t-SNE")])], out)
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(figures["marker"].read_bytes()[:60])
    for bad in (not_image, truncated):
        with pytest.raises(ValueError, match=re.escape(str(bad))):
            write_report("Bad", [Section("S", figures=[Figure(bad, "broken")])], out)
    with pytest.raises(FileNotFoundError):
        write_report("Bad", [Section("S", figures=[Figure(missing, "x")])], tmp_path / "fresh", embed=True)

    assert {p: p.read_bytes() for p in paths.values()} == before  # nothing written by the failed runs
    assert not (tmp_path / "fresh").exists()


def test_table_headers_cells_and_checks(tmp_path):
    frame = pd.DataFrame(
        {"AUC": [0.5, 0.987654], "E_warp": [1234.5678, np.nan], "ok": [True, False], "n": [3, 40]},
        index=pd.Index(["c23", "c40"], name="compression"),
    )
    table = Table(frame, units={"E_warp": "px"}, better={"AUC": "higher", "E_warp": "lower"})
    assert [f"{name} {note}".strip() for name, note in table.headers()] == [
        "compression",
        "AUC (higher is better)",
        "E_warp (px, lower is better)",
        "ok",
        "n",
    ]
    assert table.cells() == [["c23", "0.5", "1235", "True", "3"], ["c40", "0.9877", "n/a", "False", "40"]]
    assert table.numeric() == [False, True, True, False, True]
    paths = write_report("Headers", [Section("Scores", tables=[table])], tmp_path)
    assert "|---|---:|---:|---|---:|" in paths["markdown"].read_text("utf-8")
    page = paths["html"].read_text("utf-8")
    assert '<th scope="col" class=num>AUC <span class="note">(higher is better)</span></th>' in page
    assert "<td class=num>0.9877</td>" in page

    with pytest.raises(ValueError, match="better must be 'higher' or 'lower'"):
        Table(frame, better={"AUC": "up"})
    with pytest.raises(ValueError, match=r"units names no column \['AUCC'\]"):
        Table(frame, units={"AUCC": "%"})
    with pytest.raises(TypeError, match="DataFrame"):
        Table(frame.to_dict())


@pytest.mark.parametrize("name", ["carphone_pristine", "hello_720p"])
def test_face_crop_frames_the_face(name, sample, cascade):
    frame = VideoReader(sample(name)).read([0])[0]
    faces = cascade.detect(frame)
    box = faces.boxes[faces.largest()]
    side = 2 * int(max(box[2] - box[0], box[3] - box[1]) / 2)  # even: the 2x square's centre is whole
    x0, y0 = int(box[0]), int(box[1])
    square = np.array([x0, y0, x0 + side, y0 + side], np.float64)
    face = frame[y0 : y0 + side, x0 : x0 + side].astype(int)

    exact = face_crop(frame, square, size=side, scale=1.0)  # the box's own pixels, unscaled
    assert np.abs(exact.astype(int) - face).max() <= 1
    wide = face_crop(frame, [square, [np.nan] * 4], size=2 * side, scale=2.0)  # NaN rows are ignored
    centre = wide[side // 2 : side // 2 + side, side // 2 : side // 2 + side].astype(int)
    assert np.abs(centre - face).max() <= 1
    small = face_crop(frame, square, size=side // 3, scale=1.0)  # shrunk with area averaging
    expected = cv2.resize(
        frame[y0 : y0 + side, x0 : x0 + side], (side // 3, side // 3), interpolation=cv2.INTER_AREA
    )
    assert np.abs(small.astype(int) - expected).max() <= 1

    crop = face_crop(frame, box, size=192)  # a sheet's thumbnail: the face fills half of it, centred
    found = cascade.detect(crop)
    assert len(found)
    x_0, y_0, x_1, y_1 = found.boxes[found.largest()]
    assert abs((x_0 + x_1) / 2 - 96) < 20 and abs((y_0 + y_1) / 2 - 96) < 20
    assert 60 < max(x_1 - x_0, y_1 - y_0) < 130

    corner = face_crop(frame, [0, 0, 20, 20], size=40, scale=2.0)  # outside the frame: black
    assert not corner[:10].any() and not corner[:, :10].any()
    assert np.abs(corner[10:, 10:].astype(int) - frame[:30, :30]).max() <= 1
    with pytest.raises(ValueError, match="finite box"):
        face_crop(frame, [np.nan] * 4)


# --- in a browser -----------------------------------------------------------------------------------


def _chromium() -> str:
    found = next((path for path in map(shutil.which, CHROMIUM) if path), None)
    if found is None:
        pytest.skip(
            f"no Chromium binary ({', '.join(CHROMIUM)}) on PATH, so the report was not opened in a browser; "
            "install it with `apt-get install chromium` (.ci/run does, as root)"
        )
    return found


def _browse(page: Path, tmp_path: Path, *options: str) -> str:
    """Open ``page`` in headless Chromium with ``options``; its stdout."""
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        *options,
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.parametrize("embed", [False, True], ids=["copied", "embedded"])
def test_every_image_loads_in_chromium_and_no_text_runs(tmp_path, figures, carphone, embed):
    strip = tmp_path / "strip.png"  # 2292 px wide, in a 900 px window
    write_png(strip, contact_sheet([("twelve frames", [carphone[0]] * 12)], height=144))
    wide = pd.DataFrame(np.arange(3 * 40).reshape(3, 40) / 7, columns=[f"metric {i}" for i in range(40)])
    sections = [*_sections(figures), Section("Wide", tables=[Table(wide)], figures=[Figure(strip, "Wide")])]
    out = tmp_path / "out"
    paths = write_report(HOSTILE_ID, sections, out, intro=HOSTILE_CAPTION, embed=embed)
    # A copy beside the page with the probe script (the report itself has none, and its policy forbids
    # scripts); the probe's policy allows inline scripts, so escaped text that ran would show here.
    page = paths["html"].read_text("utf-8")
    probe = out / "probe.html"
    probe.write_text(
        page.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';").replace(
            "</body>", f"{PROBE}\n</body>"
        ),
        "utf-8",
    )
    dom = _browse(probe, tmp_path, "--dump-dom", "--window-size=900,1400")
    root = re.search(r"<html[^>]*>", dom)[0]
    assert dict(re.findall(r'data-([\w-]+)="([^"]*)"', root)) == {
        "images": "6",
        "loaded": "6",
        "scripts": "1",  # the probe: nothing of the text ran (no data-pwned either)
        "images-fit": "true",
        "wide-tables-scroll": "true",
        "page-overflows": "false",
    }, root
    assert (out / FILES_DIR).exists() != embed


def test_the_page_shows_its_images_under_its_own_policy(tmp_path, figures):
    paths = write_report("Screenshot", _sections(figures)[1:], tmp_path / "out")
    shot = tmp_path / "shot.png"
    _browse(paths["html"], tmp_path, f"--screenshot={shot}", "--window-size=900,1600", "--hide-scrollbars")
    image = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB).astype(int)
    magenta = (np.abs(image - MAGENTA).max(axis=2) < 8).sum()
    assert magenta >= 0.9 * 60 * 240, f"{magenta} magenta pixels: the 240 x 60 marker did not show"
