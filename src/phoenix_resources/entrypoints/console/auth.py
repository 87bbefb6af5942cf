"""Who may use the console, and how a browser proves it (docs/security.md#the-web-console).

* **Tokens.** Bearer tokens are known only by their SHA-256 digests, each with a label (who
  holds it) and a role: a *viewer* may look, an *operator* may also act. A presented token is
  hashed and compared with every digest in constant time, so timing says nothing about which
  matched or how much of it.
* **Sessions.** A browser cannot send a bearer header on a plain navigation, so the login
  form takes the token once and answers with a session cookie (``HttpOnly``,
  ``SameSite=Strict``, ``Path=/``, ``Secure`` over HTTPS): the label, the role, an expiry and
  a random session id, signed with HMAC-SHA-256 under a secret drawn when the process starts.
  Nothing is stored on the server; restarting the console (or changing its tokens, which
  needs a restart) ends every session.
* **CSRF.** Every form that changes something carries a token derived from the session id
  with the same secret (HMAC, a different purpose prefix); a POST made with the cookie must
  carry it. A request that authenticates with its own bearer header needs none: a browser
  never adds that header by itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum

COOKIE = "phoenix_console"
SESSION_TTL_S = 8 * 3600
"""A session lasts one working shift; then the token is asked for again."""


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking: the token's label and what it may do."""

    label: str
    role: Role

    @property
    def may_act(self) -> bool:
        return self.role >= Role.OPERATOR


class Tokens:
    """Labelled SHA-256 digests of the accepted tokens."""

    def __init__(self, viewers: Mapping[str, str], operators: Mapping[str, str]) -> None:
        self._known = [(digest.strip().lower().encode(), Identity(label, role))
                       for role, by_label in ((Role.VIEWER, viewers), (Role.OPERATOR, operators))
                       for label, digest in by_label.items()]

    @property
    def configured(self) -> bool:
        return bool(self._known)

    def identify(self, token: str) -> Identity | None:
        """The identity of ``token``, or ``None``. Every digest is compared (no early exit);
        a token listed under both roles is an operator."""
        digest = hashlib.sha256(token.strip().encode()).hexdigest().encode()
        found: Identity | None = None
        for known, identity in self._known:
            if hmac.compare_digest(digest, known) and (found is None
                                                       or identity.role > found.role):
                found = identity
        return found

    def from_header(self, authorization: str | None) -> Identity | None:
        """The identity of an ``Authorization: Bearer <token>`` header, or ``None``."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.identify(token)


@dataclass(frozen=True, slots=True)
class Session:
    identity: Identity
    sid: str
    expires: int
    """Epoch seconds."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and checks signed session cookies and their CSRF tokens."""

    def __init__(self, secret: bytes | None = None, ttl_s: int = SESSION_TTL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._ttl_s = ttl_s
        self._clock = clock

    def _sign(self, purpose: bytes, data: bytes) -> bytes:
        return hmac.new(self._secret, purpose + b"\x00" + data, hashlib.sha256).digest()

    def issue(self, identity: Identity) -> tuple[Session, str]:
        """A new session for ``identity`` and its cookie value."""
        session = Session(identity, secrets.token_urlsafe(16),
                          int(self._clock()) + self._ttl_s)
        payload = json.dumps({"l": identity.label, "r": int(identity.role), "s": session.sid,
                              "e": session.expires}, separators=(",", ":")).encode()
        return session, f"{_b64(payload)}.{_b64(self._sign(b'session', payload))}"

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie value: ``None`` unless signed by this process, well
        formed and not expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        body, signature = cookie.split(".")
        try:
            payload, mac = _unb64(body), _unb64(signature)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(mac, self._sign(b"session", payload)):
            return None
        try:
            data = json.loads(payload)
            session = Session(Identity(str(data["l"]), Role(int(data["r"]))), str(data["s"]),
                              int(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > self._clock() else None

    def csrf(self, session: Session) -> str:
        """The token every state-changing form of this session carries."""
        return _b64(self._sign(b"csrf", session.sid.encode()))

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest((token or "").encode(),
                                                   self.csrf(session).encode())

    @property
    def ttl_s(self) -> int:
        return self._ttl_s


def cookie_header(value: str, *, secure: bool, max_age: int) -> str:
    """The ``Set-Cookie`` value of a session (``max_age`` 0 clears it)."""
    parts = [f"{COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly",
             "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def same_origin(headers: Mapping[str, str]) -> bool:
    """Whether a state-changing request may come from this origin, as far as the browser
    says (defence in depth behind SameSite and the CSRF token): ``Sec-Fetch-Site`` must be
    ``same-origin`` or ``none`` when sent; otherwise an ``Origin``, when sent, must name the
    host the request was sent to. Clients that send neither (curl) pass."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host", "")
    return origin != "null" and origin.partition("://")[2].rstrip("/") == host


def safe_next(target: str | None) -> str:
    """Where to go after the login: a path of this site only (never ``//host`` or a URL)."""
    if (not target or not target.startswith("/") or target.startswith("//")
            or "\\" in target or any(ord(c) < 32 for c in target)):
        return "/"
    return target
