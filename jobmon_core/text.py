"""Plain aligned text tables for terminals."""

from __future__ import annotations

import re
from collections.abc import Sequence

# C0 and C1 control characters (newline, tab, ESC...) and the Unicode line separators: in a
# job name or message they would break a table or a plugin's output into extra lines, or
# drive the terminal (colours, cursor moves). Shown escaped instead, as Python's repr does.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(value: str) -> str:
    """``value`` on one line, each control character escaped (``\\n``, ``\\x1b``), and
    lone surrogates too (``\\udcff``: undecodable bytes of ``argv``), which a UTF-8
    terminal cannot be sent."""
    value = _CONTROL.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), value)
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; None shows as an empty cell; control characters
    are shown escaped, so a cell is always one line."""
    cells = [[("" if v is None else printable(str(v))) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in out)
