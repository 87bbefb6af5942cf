"""The console's page shell and its small shared pieces: navigation, the status and alert
regions, forms, the login and confirmation pages.

Accessibility, for every page: a ``lang``, a title naming the page, a skip link to ``main``,
one ``h1``, navigation in a labelled ``nav`` with ``aria-current``, every control with a
visible label (or an accessible name that says which row it acts on), results announced in
a ``role=status`` region (``role=alert`` for failures), and a visible focus outline
(``static/console.css``). Everything works with the keyboard and without JavaScript; the
script only re-announces the result on load and refreshes the pipeline page.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from phoenix_resources.entrypoints.console.auth import Identity
from phoenix_resources.entrypoints.console.markup import Html, el, join

PRODUCT = "phoenix-resources console"
SECTIONS = (("/", "Pipeline"), ("/parked", "Parked commands"), ("/outbox", "Parked events"),
            ("/dlq", "Dead letters"))


@dataclass(frozen=True, slots=True)
class View:
    """Who is looking, the CSRF token their forms carry (``None`` for a caller that sent its
    own bearer header), and the outcome of what they just did, if anything."""

    identity: Identity | None = None
    csrf: str | None = None
    status: str | None = None
    """A result, announced politely."""
    alert: str | None = None
    """A failure, announced at once."""

    @property
    def may_act(self) -> bool:
        return self.identity is not None and self.identity.may_act

    def said(self, *, status: str | None = None, alert: str | None = None) -> View:
        return View(self.identity, self.csrf, status, alert)


def page(title: str, view: View, *body: object, current: str | None = None) -> Html:
    """A whole document."""
    head = el("head", None,
              el("meta", {"charset": "utf-8"}),
              el("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
              el("title", None, f"{title} · {PRODUCT}"),
              el("link", {"rel": "stylesheet", "href": "/static/console.css"}),
              el("script", {"src": "/static/console.js", "defer": True}))
    main = el("main", {"id": "main", "tabindex": "-1"}, el("h1", None, title),
              _regions(view), *body)
    return Html("<!doctype html>\n" + el("html", {"lang": "en"}, head,
                                        el("body", None, _header(view, current), main)))


def _regions(view: View) -> Html:
    """The live regions: always in the page (so that filling them is announced), empty
    when there is nothing to say."""
    return join(el("div", {"id": "status", "class": "status" if view.status else None,
                           "role": "status", "aria_live": "polite"}, view.status),
                el("div", {"id": "alert", "class": "alert" if view.alert else None,
                           "role": "alert", "aria_live": "assertive"}, view.alert))


def _header(view: View, current: str | None) -> Html:
    skip = el("a", {"class": "skip", "href": "#main"}, "Skip to content")
    if view.identity is None:
        return join(skip, el("header", None, el("p", {"class": "brand"}, PRODUCT)))
    links = [el("li", None, el("a", {"href": href,
                                     "aria_current": "page" if href == current else None},
                               label))
             for href, label in SECTIONS]
    who = [el("span", None, "Signed in as ", el("strong", None, view.identity.label),
              f" ({view.identity.role.label})")]
    if view.csrf is not None:
        who.append(el("form", {"method": "post", "action": "/logout", "class": "inline"},
                      csrf_field(view), el("button", {"type": "submit"}, "Sign out")))
    return join(skip, el("header", None, el("p", {"class": "brand"}, PRODUCT),
                         el("nav", {"aria_label": "Sections"}, el("ul", None, *links)),
                         el("div", {"class": "who"}, *who)))


def csrf_field(view: View) -> Html:
    if view.csrf is None:
        return Html("")
    return el("input", {"type": "hidden", "name": "csrf", "value": view.csrf})


def section(heading_id: str, heading: str, *body: object, **attrs: object) -> Html:
    """A region named by its ``h2``."""
    return el("section", {"aria_labelledby": heading_id, **attrs},
              el("h2", {"id": heading_id}, heading), *body)


def action_link(href: str, label: str, target: str, *, danger: bool = False) -> Html:
    """A link to a confirmation page, shaped like a button; its accessible name says which
    row it acts on (``Replay`` + a hidden ``resource 3f1e…``)."""
    return el("a", {"href": href, "class": "button danger" if danger else "button"},
              label, el("span", {"class": "visually-hidden"}, f" {target}"))


def confirm(title: str, view: View, action: str, explanation: Iterable[object],
            *fields: object, button: str, cancel: str, danger: bool = False) -> Html:
    """The confirmation step of an action: what will happen, then one form that does it
    (with the CSRF token) and a way back that does nothing."""
    form = el("form", {"method": "post", "action": action, "class": "confirm"},
              csrf_field(view), *fields,
              el("div", {"class": "buttons"},
                 el("button", {"type": "submit", "class": "danger" if danger else None},
                    button),
                 el("a", {"href": cancel}, "Cancel")))
    return page(title, view, *(el("p", None, part) for part in explanation), form)


def login(view: View, next_path: str) -> Html:
    form = el("form", {"method": "post", "action": "/login", "class": "login"},
              el("input", {"type": "hidden", "name": "next", "value": next_path}),
              el("label", {"for": "token"}, "Access token"),
              el("input", {"type": "password", "id": "token", "name": "token",
                           "autocomplete": "off", "required": True, "autofocus": True,
                           "aria_describedby": "token-help"}),
              el("p", {"id": "token-help", "class": "help"},
                 "A viewer or operator token of this console (PHOENIX_CONSOLE_*_TOKEN_HASHES "
                 "holds their SHA-256 digests). It is sent once; a session cookie follows."),
              el("button", {"type": "submit"}, "Sign in"))
    return page("Sign in", view, form)


def problem(title: str, view: View, detail: str, *, back: str = "/") -> Html:
    """A page that says why a request was refused, with a way on."""
    return page(title, view.said(alert=detail), el("p", None, el("a", {"href": back},
                                                                  "Go back")))
