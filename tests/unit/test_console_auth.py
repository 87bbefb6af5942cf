"""The console's authentication pieces on their own: labelled token digests, signed session
cookies, CSRF tokens, the origin check, where a sign-in may send a browser, and HTML that
escapes what it is given."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from phoenix_resources.entrypoints.console.auth import (
    Identity,
    Role,
    Sessions,
    Tokens,
    cookie_header,
    safe_next,
    same_origin,
)
from phoenix_resources.entrypoints.console.markup import Html, el, table

pytestmark = pytest.mark.unit


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


TOKENS = Tokens(viewers={"oncall": digest("look"), "both": digest("shared")},
                operators={"alice": digest("act").upper(), "both-op": digest("shared")})


# --- tokens ---------------------------------------------------------------------------------

def test_a_token_is_known_by_its_digest_and_named_by_its_label() -> None:
    assert TOKENS.identify("look") == Identity("oncall", Role.VIEWER)
    assert TOKENS.identify("act") == Identity("alice", Role.OPERATOR)  # digest case ignored
    assert TOKENS.identify(" act\n") == Identity("alice", Role.OPERATOR)
    assert TOKENS.identify("Act") is None
    assert TOKENS.identify("") is None
    assert TOKENS.identify(digest("act")) is None  # the digest itself is no token


def test_a_token_listed_under_both_roles_is_an_operator() -> None:
    assert TOKENS.identify("shared") == Identity("both-op", Role.OPERATOR)


def test_only_operators_may_act() -> None:
    assert Identity("x", Role.OPERATOR).may_act
    assert not Identity("x", Role.VIEWER).may_act


@pytest.mark.parametrize(("header", "label"), [
    ("Bearer act", "alice"), ("bearer look", "oncall"), ("Bearer  act ", "alice"),
    ("Bearer wrong", None), ("Basic YWN0", None), ("Bearer", None), ("Bearer ", None),
    ("act", None), (None, None), ("", None)])
def test_bearer_headers(header: str | None, label: str | None) -> None:
    identity = TOKENS.from_header(header)
    assert (identity.label if identity else None) == label


def test_no_token_configured_is_visible() -> None:
    assert not Tokens({}, {}).configured
    assert TOKENS.configured


# --- sessions and CSRF ----------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


ALICE = Identity("alice", Role.OPERATOR)


def test_a_session_cookie_round_trips_and_expires() -> None:
    clock = Clock()
    sessions = Sessions(b"k" * 32, ttl_s=60, clock=clock)
    session, cookie = sessions.issue(ALICE)
    assert sessions.read(cookie) == session
    assert session.identity == ALICE
    clock.now += 59
    assert sessions.read(cookie) == session
    clock.now += 1
    assert sessions.read(cookie) is None


def test_each_session_has_its_own_id() -> None:
    sessions = Sessions()
    assert sessions.issue(ALICE)[0].sid != sessions.issue(ALICE)[0].sid


def test_a_cookie_of_another_process_is_refused() -> None:
    _, cookie = Sessions(b"a" * 32).issue(ALICE)
    assert Sessions(b"b" * 32).read(cookie) is None
    assert Sessions().read(Sessions().issue(ALICE)[1]) is None  # a fresh secret each start


def test_a_tampered_cookie_is_refused() -> None:
    sessions = Sessions(b"k" * 32)
    _, viewer_cookie = sessions.issue(Identity("bob", Role.VIEWER))
    body, signature = viewer_cookie.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["r"] = int(Role.OPERATOR)  # promote yourself
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    assert sessions.read(f"{forged}.{signature}") is None
    assert sessions.read(f"{body}.{signature[:-2]}AA") is None


@pytest.mark.parametrize("cookie", [None, "", ".", "a.b.c", "nodot", "!!!.???", "e30.e30",
                                    "%%%.%%%"])
def test_malformed_cookies_are_no_session(cookie: str | None) -> None:
    assert Sessions(b"k" * 32).read(cookie) is None


def test_csrf_tokens_belong_to_their_session() -> None:
    sessions = Sessions(b"k" * 32)
    mine, _ = sessions.issue(ALICE)
    other, _ = sessions.issue(ALICE)
    token = sessions.csrf(mine)
    assert sessions.csrf_ok(mine, token)
    assert not sessions.csrf_ok(other, token)
    assert not sessions.csrf_ok(mine, None)
    assert not sessions.csrf_ok(mine, "")
    assert not sessions.csrf_ok(mine, token[:-1])
    assert not Sessions(b"j" * 32).csrf_ok(mine, token)


def test_the_csrf_token_is_not_the_session_signature() -> None:
    sessions = Sessions(b"k" * 32)
    session, cookie = sessions.issue(ALICE)
    assert sessions.csrf(session) not in cookie


def test_the_cookie_is_http_only_strict_and_secure_over_https() -> None:
    plain = cookie_header("v", secure=False, max_age=60)
    assert plain.startswith("phoenix_console=v; ")
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=60"} <= set(plain.split("; "))
    assert "Secure" not in plain.split("; ")
    assert "Secure" in cookie_header("v", secure=True, max_age=60).split("; ")
    assert "Max-Age=0" in cookie_header("", secure=False, max_age=0)


# --- the origin check and the way back after a sign-in ---------------------------------------

@pytest.mark.parametrize(("headers", "ok"), [
    ({"sec-fetch-site": "same-origin", "origin": "http://c:8010", "host": "c:8010"}, True),
    ({"sec-fetch-site": "none"}, True),
    ({"sec-fetch-site": "cross-site", "origin": "http://c:8010", "host": "c:8010"}, False),
    ({"sec-fetch-site": "same-site"}, False),
    ({"origin": "http://c:8010", "host": "c:8010"}, True),
    ({"origin": "https://c:8010", "host": "c:8010"}, True),  # TLS ended by a proxy
    ({"origin": "http://evil.example", "host": "c:8010"}, False),
    ({"origin": "null", "host": "c:8010"}, False),
    ({"host": "c:8010"}, True),  # curl: no browser, no ambient cookie to abuse
])
def test_same_origin(headers: dict[str, str], ok: bool) -> None:
    assert same_origin(headers) is ok


@pytest.mark.parametrize(("target", "where"), [
    ("/parked?x=1", "/parked?x=1"), ("/", "/"), (None, "/"), ("", "/"),
    ("//evil.example/", "/"), ("https://evil.example/", "/"), ("/\\evil.example", "/"),
    ("parked", "/"), ("/a\r\nSet-Cookie: x", "/")])
def test_a_sign_in_only_sends_back_into_the_console(target: str | None, where: str) -> None:
    assert safe_next(target) == where


# --- markup -----------------------------------------------------------------------------------

def test_markup_escapes_text_and_attributes_and_keeps_markup() -> None:
    hostile = '<script>alert("x")</script>&'
    out = el("p", {"title": hostile, "data_x": True, "hidden": False, "id": None},
             hostile, el("b", None, "ok"), 3, None)
    assert out == ('<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" '
                   'data-x>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;<b>ok</b>3</p>')
    assert isinstance(out, Html)
    assert el("input", {"value": '"><x'}) == '<input value="&quot;&gt;&lt;x">'


def test_tables_have_a_caption_scoped_headers_and_say_when_empty() -> None:
    out = table("Things", ["Name", "Size"], [["a<b", 1]], empty="none")
    assert "<caption>Things</caption>" in out
    assert '<th scope="col">Name</th>' in out
    assert '<th scope="row">a&lt;b</th><td>1</td>' in out
    assert table("Things", ["Name"], [], empty="Nothing here.") == (
        '<p class="empty">Nothing here.</p>')
