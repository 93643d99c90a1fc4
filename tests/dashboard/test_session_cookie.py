"""The session cookie's signer: one secret per home (owner-only), tokens that cannot be forged, revocation."""

from __future__ import annotations

import stat
from pathlib import Path

from papscreen.dashboard.session_cookie import COOKIE_NAME, SessionSigner, clear_cookie_script, set_cookie_script


def test_the_secret_is_created_once_owner_only_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "home" / "dashboard.secret"
    first = SessionSigner.from_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = first.token("bob.jones@lab", lifetime_s=3600)
    assert SessionSigner.from_file(path).user_of(token) == "bob.jones@lab"  # a restarted dashboard keeps sessions
    assert SessionSigner(b"another secret").user_of(token) is None


def test_malformed_tokens_name_nobody() -> None:
    signer = SessionSigner(b"s" * 32)
    good = signer.token("ann", lifetime_s=60)
    for bad in ("", "ann", "ann.123", "ann.x.y", good[:-1] + ("0" if good[-1] != "0" else "1"), ".123." + good[-64:]):
        assert signer.user_of(bad) is None, bad


def test_a_revoked_token_stays_refused_in_every_tab() -> None:
    signer = SessionSigner(b"s" * 32)
    token, other = signer.token("ann", lifetime_s=60), signer.token("ann", lifetime_s=61)
    signer.revoke(token)
    assert signer.user_of(token) is None
    assert signer.user_of(other) == "ann"  # another sign-in of the same person is not affected


def test_the_scripts_set_and_delete_the_cookie_for_the_whole_site() -> None:
    assert f"{COOKIE_NAME}=ann.1.abc; path=/; max-age=3600; SameSite=Strict" in set_cookie_script("ann.1.abc", 3600)
    assert f"{COOKIE_NAME}=; path=/; max-age=0" in clear_cookie_script()
