"""A signed cookie, so a sign-in survives a reload and holds in a second tab of the same browser.

Streamlit keeps its session state per browser tab and forgets it on reload. After a correct password the
dashboard writes ``papscreen_session`` = ``NAME.EXPIRY.SIGNATURE`` (HMAC-SHA256 with a secret kept in
``HOME/dashboard.secret``, created readable by its owner only); every run of a tab without a user reads it back
(``st.context.cookies``), checks the signature, the expiry and that the user is still in the users file. Signing
out forgets the session, revokes that cookie on the server at once (so another tab holding it is signed out at its
next click) and clears it in the browser. The cookie is written by a script in a zero-height component (Streamlit
has no server-side Set-Cookie), so it is not HttpOnly: serve the dashboard behind TLS (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from pathlib import Path

__all__ = ["COOKIE_NAME", "SessionSigner", "clear_cookie_script", "set_cookie_script"]

COOKIE_NAME = "papscreen_session"


class SessionSigner:
    """Makes and checks session tokens with one secret; remembers revoked ones until they expire.

    Examples:
        >>> signer = SessionSigner(b"k" * 32)
        >>> token = signer.token("ann", lifetime_s=60, now=1000.0)
        >>> signer.user_of(token, now=1030.0)
        'ann'
        >>> signer.user_of(token, now=1061.0) is None  # expired
        True
        >>> signer.user_of(token.replace("ann", "bob"), now=1030.0) is None  # a forged name
        True
        >>> signer.revoke(token); signer.user_of(token, now=1030.0) is None
        True
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._revoked: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: Path) -> SessionSigner:
        """The signer whose secret is in ``path`` (created with a fresh random secret, mode 0600, if missing)."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
        return cls(bytes.fromhex(path.read_text().strip()))

    def _signature(self, name: str, expiry: int) -> str:
        return hmac.new(self._secret, f"{name}.{expiry}".encode(), hashlib.sha256).hexdigest()

    def token(self, name: str, *, lifetime_s: float, now: float | None = None) -> str:
        """A token for ``name`` valid for ``lifetime_s`` seconds."""
        expiry = int((time.time() if now is None else now) + lifetime_s)
        return f"{name}.{expiry}.{self._signature(name, expiry)}"

    def user_of(self, token: str | None, *, now: float | None = None) -> str | None:
        """The name a token was made for, or None when it is missing, malformed, forged, expired or revoked."""
        if not token:
            return None
        head, _, signature = token.rpartition(".")
        user, _, expiry_text = head.rpartition(".")
        if not user or not expiry_text.isdigit():
            return None
        expiry = int(expiry_text)
        if not hmac.compare_digest(signature, self._signature(user, expiry)):
            return None
        moment = time.time() if now is None else now
        with self._lock:
            self._revoked = {t: e for t, e in self._revoked.items() if e > moment}
            if token in self._revoked:
                return None
        return user if expiry > moment else None

    def revoke(self, token: str) -> None:
        """Refuse ``token`` from now on (until it would have expired anyway)."""
        expiry_text = token.rpartition(".")[0].rpartition(".")[2]
        with self._lock:
            self._revoked[token] = float(expiry_text) if expiry_text.isdigit() else time.time() + 86400


def set_cookie_script(token: str, lifetime_s: float) -> str:
    """A script that stores the session cookie for this site (path /, SameSite=Strict)."""
    return (
        f"<script>document.cookie = '{COOKIE_NAME}={token}; path=/; max-age={int(lifetime_s)}; SameSite=Strict';"
        "</script>"
    )


def clear_cookie_script() -> str:
    """A script that deletes the session cookie."""
    return f"<script>document.cookie = '{COOKIE_NAME}=; path=/; max-age=0; SameSite=Strict';</script>"
