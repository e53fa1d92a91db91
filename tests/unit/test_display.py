"""Names reach people escaped: one function, every dangerous character a visible escape."""

from __future__ import annotations

import pytest

from syncd.display import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain/näme ünïcode 名前.txt", "plain/näme ünïcode 名前.txt"),  # kept as is
        ("a\nb.txt", "a\\nb.txt"),
        ("tab\there\r", "tab\\there\\r"),
        ("clear\x1b[2J", "clear\\x1b[2J"),
        ("nul\x00del\x7f", "nul\\x00del\\x7f"),
        ("c1 csi\x9b2J nel\x85", "c1 csi\\x9b2J nel\\x85"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),
        ("iso\u2066late\u2069 lrm\u200e alm\u061c", "iso\\u2066late\\u2069 lrm\\u200e alm\\u061c"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("bad utf-8 \udcff\udc80", "bad utf-8 \\xff\\x80"),  # surrogateescape: the bytes as they are on disk
        ("lone \ud800", "lone \\ud800"),
        ("back\\slash", "back\\\\slash"),  # so that "a\\nb" (a name) never reads as "a\nb" escaped
        ("nbsp\u00a0émoji 👨\u200d👩", "nbsp\u00a0émoji 👨\\u200d👩"),  # spaces kept, joiners shown
    ],
)
def test_printable_escapes_what_could_move_the_terminal(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_printable_output_is_one_line_with_no_control_or_format_character() -> None:
    import unicodedata

    nasty = "".join(chr(c) for c in range(0x3000)) + "\udcfe\U000e0001\ufeff"
    out = printable(nasty)
    assert not [c for c in out if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")]
    assert len(out.splitlines()) == 1
    assert printable("zero\u200bwidth") == "zero\\u200bwidth" and printable("\U000e0001") == "\\U000e0001"
    assert printable(42) == "42"
