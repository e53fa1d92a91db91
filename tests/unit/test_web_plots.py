"""The dashboard's inline SVG charts (pure): scaled bars, tooltips, escaped labels."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from syncd.web.plots import HEIGHT, WIDTH, Bar, bar_chart, seconds, size

SVG = "{http://www.w3.org/2000/svg}"


def rects(svg: str) -> list[ET.Element]:
    return ET.fromstring(svg).findall(f"{SVG}rect")


def test_bars_scale_to_the_largest_and_fit_the_frame() -> None:
    svg = bar_chart([Bar("one", 10), Bar("two", 40), Bar("three", 20)], title="files per run")
    bars = rects(svg)
    heights = [float(b.get("height", "0")) for b in bars]
    assert len(bars) == 3
    assert (
        heights[1] == max(heights) and abs(heights[0] * 4 - heights[1]) < 0.5 and abs(heights[2] * 2 - heights[1]) < 0.5
    )
    for bar in bars:
        x, w, y, h = (float(bar.get(k, "0")) for k in ("x", "width", "y", "height"))
        assert x >= 0 and x + w <= WIDTH + 0.01 and y >= 0 and y + h <= HEIGHT
    lefts = [float(b.get("x", "0")) for b in bars]
    assert lefts == sorted(lefts)  # in the order given: oldest left
    assert "(max 40)" in svg


def test_each_bar_has_a_tooltip_with_its_formatted_value() -> None:
    svg = bar_chart([Bar("05-01 12:00 ok", 1536)], title="bytes per run", fmt=size)
    (bar,) = rects(svg)
    title = bar.find(f"{SVG}title")
    assert title is not None and title.text == "05-01 12:00 ok: 1.5 KiB"


def test_failed_runs_are_marked_and_zero_still_shows() -> None:
    svg = bar_chart([Bar("a", 0), Bar("b", 0, bad=True)], title="t")
    classes = [b.get("class") for b in rects(svg)]
    assert classes == ["bar", "bar bad"]
    assert all(float(b.get("height", "0")) >= 1.0 for b in rects(svg))  # a hairline, never invisible


def test_no_data_draws_a_frame_that_says_so() -> None:
    svg = bar_chart([], title="files per day")
    assert rects(svg) == [] and "no data" in svg
    ET.fromstring(svg)  # well-formed


def test_labels_are_escaped_never_markup() -> None:
    hostile = '<script>alert("x")</script> & "quoted"'
    svg = bar_chart([Bar(hostile, 1)], title=hostile, first=hostile, last=hostile)
    assert "<script>" not in svg
    root = ET.fromstring(svg)  # still well-formed: the label is text
    texts = [t.text for t in root.iter() if t.text]
    assert any(hostile in text for text in texts)
    assert not root.findall(f".//{SVG}script") and not re.search(r"<(?!/?(svg|text|line|rect|title)\b)", svg)


def test_value_formats() -> None:
    assert [size(v) for v in (0, 512, 1536, 5 * 1024**2, 3 * 1024**3, 5000 * 1024**3)] == [
        "0 B",
        "512 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
        "5000.0 GiB",
    ]
    assert [seconds(v) for v in (0.25, 12, 90, 7200)] == ["0.2 s", "12 s", "1.5 min", "2.0 h"]
