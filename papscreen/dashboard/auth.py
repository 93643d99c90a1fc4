"""Who may use the dashboard: a users file of bcrypt password hashes, and the sign-in form.

The users file (``settings.dashboard.users_file``, by default ``HOME/users.toml``) switches sign-in on: when it
exists, no page shows anything before a correct name and password, and every review is recorded under the
signed-in name. Without it the dashboard runs open and says so. The file holds only bcrypt hashes, is written
with mode 0600, and is managed with ``papscreen users add|remove|list``::

    [users."ann"]
    password_hash = "$2b$12$..."
    display_name = "Ann Smith"
    role = "cytotechnologist"

Each user has one role (:class:`~papscreen.db.queries.signout.Role`): a cytotechnologist screens, reviews cells
and signs out NILM and unsatisfactory slides; a pathologist also signs out abnormal ones; an admin manages models
and settings and signs nothing. A user written before roles existed is a cytotechnologist.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import streamlit as st

from papscreen.db.queries.signout import Role
from papscreen.errors import PapscreenError

__all__ = [
    "MAX_PASSWORD_BYTES",
    "SESSION_USER_KEY",
    "WRONG_CREDENTIALS",
    "PasswordError",
    "Role",
    "SignInThrottle",
    "User",
    "UsersFileError",
    "add_user",
    "check_name",
    "hash_password",
    "load_users",
    "remove_user",
    "sign_in_form",
    "sign_out",
    "signed_in_user",
    "verify_password",
]

MAX_PASSWORD_BYTES = 72
"""bcrypt reads at most 72 bytes; longer passwords are refused rather than silently cut."""
MIN_PASSWORD_CHARS = 8
SESSION_USER_KEY = "papscreen_user"
WRONG_CREDENTIALS = "wrong name or password"
LOCKOUT_FAILURES = 5
LOCKOUT_SECONDS = 15 * 60
"""Five failed sign-ins for a name within 15 minutes lock it for 15 minutes from the last one."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$")
_KNOWN_KEYS = {"password_hash", "display_name", "role"}
# Checked against when the name is unknown, so a wrong name takes as long as a wrong password.
_DUMMY_HASH = "$2b$12$mdwt2bp1uUYdMHv/dgMf3uXIWoEF/ebSwV8xNUOacicp3e1silnM6"


class UsersFileError(PapscreenError):
    """The users file cannot be read or changed; the message names the file and says what to fix."""


class PasswordError(PapscreenError):
    """A new password is unusable (empty, too short, or longer than bcrypt reads)."""


@dataclass(frozen=True)
class User:
    """One dashboard user as the users file holds them.

    Attributes:
        name: the sign-in name; reviews are recorded under it.
        password_hash: a bcrypt hash (``$2b$...``), never the password.
        display_name: shown in the sidebar (the name when not given).
        role: what the dashboard lets them do (:class:`Role`).
    """

    name: str
    password_hash: str
    display_name: str
    role: Role = Role.CYTOTECHNOLOGIST


def check_name(name: str) -> str:
    """Return ``name`` if it can be a user name (letters, digits, ``. _ @ -``; 1-64 characters).

    Examples:
        >>> check_name("ann.smith")
        'ann.smith'
        >>> check_name("ann smith")
        Traceback (most recent call last):
        ...
        papscreen.dashboard.auth.UsersFileError: user name 'ann smith' is not allowed: use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit
    """  # noqa: E501
    if not _NAME.fullmatch(name):
        raise UsersFileError(
            f"user name {name!r} is not allowed: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def hash_password(password: str, rounds: int = 12) -> str:
    """A bcrypt hash of ``password`` (a fresh salt each time) for the users file.

    Args:
        password: the new password; at least 8 characters and at most 72 bytes in UTF-8 (bcrypt's limit).
        rounds: bcrypt's cost (2^rounds); 12 takes about a quarter of a second, tests use 4.

    Raises:
        PasswordError: the password is too short or too long.

    Examples:
        >>> digest = hash_password("correct horse", rounds=4)
        >>> digest.startswith("$2b$04$"), verify_password("correct horse", digest)
        (True, True)
    """
    if len(password) < MIN_PASSWORD_CHARS:
        raise PasswordError(f"the password needs at least {MIN_PASSWORD_CHARS} characters")
    encoded = password.encode()
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise PasswordError(
            f"the password is {len(encoded)} bytes long; bcrypt reads at most {MAX_PASSWORD_BYTES}: "
            "choose a shorter one"
        )
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds)).decode("ascii")


def verify_password(password: str, password_hash: str) -> bool:
    """Whether ``password`` matches ``password_hash``; False for a malformed hash or an over-long password.

    Examples:
        >>> verify_password("anything", "not a hash")
        False
    """
    encoded = password.encode()
    if len(encoded) > MAX_PASSWORD_BYTES:
        return False
    try:
        return bcrypt.checkpw(encoded, password_hash.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return False


def load_users(path: Path) -> dict[str, User]:
    r"""Read the users file: every user by name.

    Raises:
        UsersFileError: the file is missing, unreadable, not TOML, or a user lacks a valid bcrypt hash; the
            message names the file and the entry.

    Examples:
        >>> import tempfile, pathlib
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "users.toml"
        >>> _ = file.write_text('[users.ann]\npassword_hash = "plain"\n')
        >>> load_users(file)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        papscreen.dashboard.auth.UsersFileError: users file ...: user 'ann': password_hash is not a bcrypt hash ...
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise UsersFileError(f"users file {path} does not exist: add a user with `papscreen users add NAME`") from e
    except (OSError, UnicodeDecodeError) as e:
        raise UsersFileError(f"users file {path} cannot be read: {e}") from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsersFileError(f"users file {path} is not valid TOML: {e}") from e
    unknown = sorted(set(data) - {"users"})
    if unknown:
        raise UsersFileError(f"users file {path}: unexpected top-level entries {unknown}; only [users.NAME] tables")
    table = data.get("users", {})
    if not isinstance(table, dict):
        raise UsersFileError(f"users file {path}: 'users' must be a table of [users.NAME] entries")
    users: dict[str, User] = {}
    for name, entry in table.items():
        where = f"users file {path}: user {name!r}"
        if not _NAME.fullmatch(name):
            raise UsersFileError(f"{where}: the name is not allowed (letters, digits, '.', '_', '@', '-')")
        if not isinstance(entry, dict):
            raise UsersFileError(f"{where}: must be a table with password_hash (and display_name)")
        extra = sorted(set(entry) - _KNOWN_KEYS)
        if extra:
            raise UsersFileError(f"{where}: unexpected keys {extra}; only password_hash, display_name and role")
        digest = entry.get("password_hash")
        if not isinstance(digest, str) or not _BCRYPT_HASH.fullmatch(digest):
            raise UsersFileError(
                f"{where}: password_hash is not a bcrypt hash ($2b$...); "
                f"set it with `papscreen users add {name} --replace`"
            )
        display = entry.get("display_name", name)
        if not isinstance(display, str) or not display.strip():
            raise UsersFileError(f"{where}: display_name must be a non-empty string")
        role = entry.get("role", Role.CYTOTECHNOLOGIST.value)
        if role not in set(Role):
            raise UsersFileError(f"{where}: role must be one of {', '.join(r.value for r in Role)}, not {role!r}")
        users[name] = User(name=name, password_hash=digest, display_name=display, role=Role(role))
    return users


def _toml_string(value: str) -> str:
    r"""A TOML basic string (quotes, backslashes and control characters escaped).

    Examples:
        >>> print(_toml_string('Ann "the reviewer"\n'))
        "Ann \"the reviewer\"\u000a"
    """
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def _write_users(path: Path, users: dict[str, User]) -> None:
    """Replace the users file at once (a 0600 temporary file renamed over it), so no reader sees half a file."""
    lines = [
        "# papscreen dashboard users: bcrypt hashes only. Manage with `papscreen users add|remove|list`.",
        "",
    ]
    for user in sorted(users.values(), key=lambda u: u.name):
        lines += [
            f"[users.{_toml_string(user.name)}]",
            f"password_hash = {_toml_string(user.password_hash)}",
            f"display_name = {_toml_string(user.display_name)}",
            f"role = {_toml_string(user.role.value)}",
            "",
        ]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates it 0600
    except OSError as e:
        raise UsersFileError(f"cannot write the users file {path}: {e}") from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise UsersFileError(f"cannot write the users file {path}: {e}") from e


def add_user(
    path: Path,
    name: str,
    password: str,
    *,
    display_name: str | None = None,
    role: Role | str | None = None,
    replace: bool = False,
    rounds: int = 12,
) -> User:
    """Add a user (creating the file, mode 0600, when it is missing); an existing user only with ``replace``.

    Raises:
        UsersFileError: a bad name, the user exists and ``replace`` is False, or the file is malformed.
        PasswordError: the password is too short or too long.

    Examples:
        >>> import tempfile, pathlib
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "users.toml"
        >>> add_user(file, "ann", "correct horse", rounds=4).display_name
        'ann'
        >>> oct(file.stat().st_mode & 0o777)
        '0o600'
        >>> add_user(file, "ann", "another one", rounds=4)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        papscreen.dashboard.auth.UsersFileError: user 'ann' already exists in ...: pass --replace to change ...
    """
    check_name(name)
    users = load_users(path) if path.exists() else {}
    if name in users and not replace:
        raise UsersFileError(
            f"user {name!r} already exists in {path}: pass --replace to change their password (replace=True)"
        )
    display = (display_name or "").strip() or (users[name].display_name if name in users else name)
    kept_role = users[name].role if name in users else Role.CYTOTECHNOLOGIST
    users[name] = User(
        name=name, password_hash=hash_password(password, rounds), display_name=display, role=Role(role or kept_role)
    )
    _write_users(path, users)
    return users[name]


def remove_user(path: Path, name: str) -> dict[str, User]:
    """Remove a user; returns the users left (an empty file still requires sign-in, and lets nobody in).

    Raises:
        UsersFileError: no such user, or the file is missing or malformed.
    """
    users = load_users(path)
    if name not in users:
        known = ", ".join(sorted(users)) or "none"
        raise UsersFileError(f"no user {name!r} in {path} (users: {known})")
    del users[name]
    _write_users(path, users)
    return users


def signed_in_user(users: dict[str, User]) -> User | None:
    """The user this browser session signed in as, if they are still in the users file (removal signs out)."""
    name = st.session_state.get(SESSION_USER_KEY)
    if name is None:
        return None
    user = users.get(name)
    if user is None:
        del st.session_state[SESSION_USER_KEY]
    return user


class SignInThrottle:
    """Failed sign-ins per name: each failure makes the next answer slower, and too many lock the name a while.

    Kept by the dashboard's server process (shared by every browser session), so a second tab or a reload does
    not reset it. A correct password after the lock has passed clears the count.
    """

    def __init__(
        self,
        *,
        max_failures: int = LOCKOUT_FAILURES,
        lockout_seconds: float = LOCKOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.lockout_seconds, self.clock = max_failures, lockout_seconds, clock
        self._lock = threading.Lock()
        self._failures: dict[str, list[float]] = {}

    def locked_for(self, name: str) -> float:
        """Seconds this name stays locked (0: it may try)."""
        with self._lock:
            recent = self._recent(name)
            if len(recent) < self.max_failures:
                return 0.0
            return max(0.0, recent[-1] + self.lockout_seconds - self.clock())

    def delay_after_failure(self, name: str) -> float:
        """Record a failure; returns how long to wait before answering (1 s more per recent failure, at most 5)."""
        with self._lock:
            recent = self._recent(name)
            recent.append(self.clock())
            self._failures[_key(name)] = recent
            return float(min(len(recent), 5))

    def succeeded(self, name: str) -> None:
        """Forget a name's failures."""
        with self._lock:
            self._failures.pop(_key(name), None)

    def _recent(self, name: str) -> list[float]:
        since = self.clock() - self.lockout_seconds
        return [t for t in self._failures.get(_key(name), []) if t >= since]


def _key(name: str) -> str:
    return name.strip().lower()


@st.cache_resource
def _server_throttle() -> SignInThrottle:
    """The one throttle of this dashboard server (Streamlit keeps it across sessions and reruns)."""
    return SignInThrottle()


def _check_credentials(users: dict[str, User], name: str, password: str) -> User | None:
    """The user whose name and password these are; an unknown name costs the same bcrypt check as a known one."""
    user = users.get(name.strip())
    if user is None:
        verify_password(password, _DUMMY_HASH)
        return None
    return user if verify_password(password, user.password_hash) else None


def sign_in_form(users: dict[str, User], on_attempt: Callable[[str, bool, str], None] | None = None) -> None:
    """The sign-in form, and nothing else; a correct name and password sign this session in and rerun.

    A failure says only ``wrong name or password``, never which of the two was wrong. ``on_attempt(name,
    succeeded, reason)`` hears of every attempt (the dashboard writes it to the audit log).
    """
    report = on_attempt or (lambda _name, _ok, _why: None)
    _, middle, _ = st.columns([1, 2, 1])
    with middle:
        st.title("papscreen")
        with st.form("sign-in"):
            st.subheader("Sign in")
            name = st.text_input("Name", autocomplete="username")
            password = st.text_input("Password", type="password", autocomplete="current-password")
            submitted = st.form_submit_button("Sign in", type="primary")
        if not users:
            st.error("The users file has no users, so nobody can sign in: add one with `papscreen users add NAME`.")
            return
        if not submitted:
            return
        throttle = _server_throttle()
        locked = throttle.locked_for(name)
        if locked > 0:
            report(name, False, "locked after repeated failures")
            st.error(f"too many failed sign-ins for this name: try again in {math.ceil(locked / 60)} min")
            return
        user = _check_credentials(users, name, password)
        if user is None:
            report(name, False, WRONG_CREDENTIALS)
            time.sleep(throttle.delay_after_failure(name))  # slows guessing; the form answers after the wait
            st.error(WRONG_CREDENTIALS)
            return
        throttle.succeeded(name)
        report(user.name, True, "password")
    st.session_state[SESSION_USER_KEY] = user.name
    st.rerun()


def sign_out() -> None:
    """Forget this session's user (the next run shows the sign-in form)."""
    st.session_state.pop(SESSION_USER_KEY, None)
