"""Text and HTML rendering shared by the attack results (no party data, only attack outcomes)."""

from __future__ import annotations

import html
from collections.abc import Sequence


def table_html(title: str, header: Sequence[str], rows: Sequence[Sequence[object]], note: str) -> str:
    """A small HTML table with a caption and a note."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return (f"<div><b>{html.escape(title)}</b><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p><i>{html.escape(note)}</i></p></div>")


def table_text(title: str, header: Sequence[str], rows: Sequence[Sequence[object]], note: str) -> str:
    """The same table as plain text."""
    lines = [title, "  " + " | ".join(str(h) for h in header)]
    lines += ["  " + " | ".join(_fmt(c) for c in r) for r in rows]
    lines.append(note)
    return "\n".join(lines)


def _fmt(c: object) -> str:
    return f"{c:.4g}" if isinstance(c, float) else str(c)
