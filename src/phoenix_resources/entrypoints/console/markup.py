"""HTML built safe by construction: text is escaped unless it is already :class:`Html`.

Every page of the console is made of :func:`el` calls; a value from the database, the broker
or a request (an error text, a key, a label) is a ``str`` and is always escaped, in content
and in attributes alike. Only this module turns a ``str`` into :class:`Html`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import datetime

VOID = frozenset({"br", "hr", "img", "input", "link", "meta"})

class Html(str):
    """Markup that is already safe: inserted as it is."""

    __slots__ = ()


def text(value: object) -> Html:
    """``value`` as escaped text (``None``: nothing)."""
    if value is None:
        return Html("")
    if isinstance(value, Html):
        return value
    if isinstance(value, datetime):
        value = value.isoformat(timespec="seconds")
    return Html(html.escape(str(value), quote=True))


def _children(children: Iterable[object]) -> Iterable[Html]:
    for child in children:
        if isinstance(child, str | int | float | datetime) or child is None:
            yield text(child)
        else:
            yield from _children(child)  # type: ignore[arg-type]


def el(name: str, attrs: Mapping[str, object] | None = None, *children: object) -> Html:
    """``<name attrs>children</name>``. An attribute whose value is ``True`` is written bare,
    one whose value is ``None`` or ``False`` is left out; a trailing ``_`` is dropped from a
    name (``class_``), other underscores become dashes (``aria_live``)."""
    parts = [name]
    for key, value in (attrs or {}).items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        parts.append(attr if value is True else f'{attr}="{text(value)}"')
    opening = f"<{' '.join(parts)}>"
    if name in VOID:
        return Html(opening)
    return Html(f"{opening}{''.join(_children(children))}</{name}>")


def join(*children: object) -> Html:
    """Several pieces side by side (escaped as :func:`el` would)."""
    return Html("".join(_children(children)))


def hidden(text_: str) -> Html:
    """Words for assistive technology only (a button's full name: "Replay" + which)."""
    return el("span", {"class": "visually-hidden"}, text_)


def table(caption: str, headers: Iterable[str], rows: Iterable[Iterable[object]],
          *, empty: str) -> Html:
    """A data table: a caption, column headers (``scope=col``), the first cell of each row
    a row header (``scope=row``); ``empty`` is said instead when there are no rows."""
    body = []
    for row in rows:
        first, *rest = list(row)
        body.append(el("tr", None, el("th", {"scope": "row"}, first),
                       *(el("td", None, cell) for cell in rest)))
    if not body:
        return el("p", {"class": "empty"}, empty)
    return el("div", {"class": "table-wrap"},
              el("table", None, el("caption", None, caption),
                 el("thead", None, el("tr", None, *(el("th", {"scope": "col"}, h)
                                                     for h in headers))),
                 el("tbody", None, *body)))


def dl(pairs: Iterable[tuple[str, object]]) -> Html:
    """A description list of (term, value)."""
    return el("dl", None, *(join(el("dt", None, term), el("dd", None, value))
                            for term, value in pairs))
