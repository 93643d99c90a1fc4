"""Sign-in: password hashing, the users file, ``papscreen users``, and the gate in front of every page."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from papscreen.cli import app as cli_app
from papscreen.dashboard import auth
from papscreen.dashboard.auth import (
    PasswordError,
    UsersFileError,
    add_user,
    hash_password,
    load_users,
    remove_user,
    verify_password,
)
from papscreen.dashboard.launch import APP_PATH
from papscreen.db import queries
from papscreen.db.database import Database
from papscreen.db.schema import Cell
from tests.dashboard.apptest_helpers import (
    fresh_streamlit_caches,  # noqa: F401 (an autouse fixture)
    run_ok,
)
from tests.dashboard.test_app import Seeded, open_page, seed_dashboard

FAST = 4  # bcrypt rounds for tests (the default, 12, takes a quarter of a second per hash)
PASSWORD = "correct horse battery"

# What the sign-in page may contain: the title, the form and its widgets, an error. Nothing that shows data.
SIGN_IN_ELEMENTS = {
    *("main", "sidebar", "event", "flex_container", "column", "form"),  # layout
    *("title", "subheader", "text_input", "button", "error"),
    "iframe",  # after a sign-out: the zero-height script that deletes the session cookie (it shows nothing)
}


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return tmp_path / "papscreen-home" / "users.toml"  # HOME/users.toml, HOME as conftest sets it


# -- hashing ----------------------------------------------------------------------------------------------------------
def test_hash_is_salted_bcrypt_and_verifies() -> None:
    first, second = hash_password(PASSWORD, rounds=FAST), hash_password(PASSWORD, rounds=FAST)

    assert first.startswith("$2b$04$")
    assert first != second  # a fresh salt each time
    assert verify_password(PASSWORD, first)
    assert verify_password(PASSWORD, second)
    assert not verify_password("correct horse battery!", first)
    assert not verify_password("", first)


@pytest.mark.parametrize(
    ("password", "message"),
    [("short", "at least 8 characters"), ("é" * 37, "74 bytes long; bcrypt reads at most 72")],
    ids=["too-short", "over-72-bytes"],
)
def test_unusable_passwords_are_refused(password: str, message: str) -> None:
    with pytest.raises(PasswordError, match=message):
        hash_password(password, rounds=FAST)


@pytest.mark.parametrize("digest", ["", "plain text", "$2b$04$short", "$argon2id$v=19$m=65536"], ids=str)
def test_verify_is_false_for_a_malformed_hash(digest: str) -> None:
    assert verify_password(PASSWORD, digest) is False


def test_verify_is_false_for_an_over_long_password() -> None:
    digest = hash_password("x" * 72, rounds=FAST)

    assert verify_password("x" * 72, digest)
    assert not verify_password("x" * 73, digest)  # bcrypt would read the first 72 bytes and say yes


# -- the users file ---------------------------------------------------------------------------------------------------
def test_add_user_creates_an_owner_only_file_and_keeps_other_users(users_file: Path) -> None:
    add_user(users_file, "ann", PASSWORD, display_name='Ann "QA" Smith, Zürich', rounds=FAST)
    add_user(users_file, "bob.jones@lab", "another password", rounds=FAST)

    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    users = load_users(users_file)
    assert sorted(users) == ["ann", "bob.jones@lab"]
    assert users["ann"].display_name == 'Ann "QA" Smith, Zürich'
    assert users["bob.jones@lab"].display_name == "bob.jones@lab"
    assert verify_password(PASSWORD, users["ann"].password_hash)
    assert PASSWORD not in users_file.read_text()


def test_each_user_has_a_role_kept_across_a_password_change(users_file: Path) -> None:
    add_user(users_file, "ann", PASSWORD, rounds=FAST)
    add_user(users_file, "dr_p", PASSWORD, role="pathologist", rounds=FAST)
    add_user(users_file, "dr_p", "a new password", replace=True, rounds=FAST)
    users = load_users(users_file)
    assert (users["ann"].role, users["dr_p"].role) == ("cytotechnologist", "pathologist")
    assert 'role = "pathologist"' in users_file.read_text()

    users_file.write_text(f"[users.old]\npassword_hash = '{GOOD_HASH}'\n")  # written before roles existed
    assert load_users(users_file)["old"].role == "cytotechnologist"

    runner = CliRunner()
    added = runner.invoke(
        cli_app, ["users", "add", "root", "--role", "admin", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert added.exit_code == 0, added.output
    assert "(root, admin)" in added.output
    assert "admin" in runner.invoke(cli_app, ["users", "list"]).output
    wrong = runner.invoke(
        cli_app, ["users", "add", "x", "--role", "janitor", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert wrong.exit_code == 2


def test_add_user_never_overwrites_without_replace(users_file: Path) -> None:
    add_user(users_file, "ann", PASSWORD, display_name="Ann", rounds=FAST)
    before = users_file.read_text()

    with pytest.raises(UsersFileError, match="'ann' already exists"):
        add_user(users_file, "ann", "a new password", rounds=FAST)
    assert users_file.read_text() == before

    add_user(users_file, "ann", "a new password", replace=True, rounds=FAST)
    ann = load_users(users_file)["ann"]
    assert verify_password("a new password", ann.password_hash)
    assert not verify_password(PASSWORD, ann.password_hash)
    assert ann.display_name == "Ann"  # kept when not given again


def test_a_group_readable_file_becomes_owner_only_when_written(users_file: Path) -> None:
    add_user(users_file, "ann", PASSWORD, rounds=FAST)
    users_file.chmod(0o644)

    add_user(users_file, "bob", PASSWORD, rounds=FAST)

    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600


def test_remove_user(users_file: Path) -> None:
    add_user(users_file, "ann", PASSWORD, rounds=FAST)
    add_user(users_file, "bob", PASSWORD, rounds=FAST)

    assert list(remove_user(users_file, "ann")) == ["bob"]
    assert list(load_users(users_file)) == ["bob"]
    with pytest.raises(UsersFileError, match=r"no user 'ann' in .* \(users: bob\)"):
        remove_user(users_file, "ann")
    assert remove_user(users_file, "bob") == {}
    assert users_file.exists()  # an empty file still requires sign-in: nobody gets in by accident


@pytest.mark.parametrize("name", ["", "ann smith", "-ann", "ann/../x", "a" * 65, 'ann"'], ids=repr)
def test_bad_user_names_are_refused(users_file: Path, name: str) -> None:
    with pytest.raises(UsersFileError, match="not allowed"):
        add_user(users_file, name, PASSWORD, rounds=FAST)
    assert not users_file.exists()


GOOD_HASH = "$2b$04$" + "a" * 53


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[users.ann\npassword_hash = 1", "is not valid TOML"),
        ('admin = "yes"\n', "unexpected top-level entries ['admin']"),
        ('users = "ann"\n', "'users' must be a table"),
        ('[users]\nann = "secret"\n', "user 'ann': must be a table"),
        ("[users.ann]\ndisplay_name = 'Ann'\n", "user 'ann': password_hash is not a bcrypt hash"),
        ("[users.ann]\npassword_hash = 'secret'\n", "user 'ann': password_hash is not a bcrypt hash"),
        (f"[users.ann]\npassword_hash = '{GOOD_HASH}'\ngroup = 'admin'\n", "unexpected keys ['group']"),
        (f"[users.ann]\npassword_hash = '{GOOD_HASH}'\nrole = 'janitor'\n", "role must be one of cytotechnologist"),
        (f"[users.ann]\npassword_hash = '{GOOD_HASH}'\ndisplay_name = ' '\n", "display_name must be a non-empty"),
        (f"[users.'ann smith']\npassword_hash = '{GOOD_HASH}'\n", "the name is not allowed"),
    ],
    ids=[
        "not-toml",
        "top-level-junk",
        "users-not-table",
        "user-not-table",
        "no-hash",
        "plain-password",
        "unknown-key",
        "unknown-role",
        "blank-display-name",
        "bad-name",
    ],
)
def test_malformed_users_file_says_what_is_wrong(users_file: Path, content: str, message: str) -> None:
    users_file.parent.mkdir(parents=True, exist_ok=True)
    users_file.write_text(content)

    with pytest.raises(UsersFileError) as error:
        load_users(users_file)
    assert message in str(error.value)
    assert str(users_file) in str(error.value)


def test_missing_users_file_says_how_to_create_it(users_file: Path) -> None:
    with pytest.raises(UsersFileError, match="does not exist: add a user with `papscreen users add NAME`"):
        load_users(users_file)


# -- papscreen users ... --------------------------------------------------------------------------------------------
def test_users_command_adds_lists_and_removes(users_file: Path) -> None:
    runner = CliRunner()

    added = runner.invoke(
        cli_app, ["users", "add", "ann", "--display-name", "Ann Smith", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert added.exit_code == 0, added.output
    assert f"user ann (Ann Smith, cytotechnologist) saved in {users_file}" in added.output
    assert "asks everyone to sign in" in added.output
    assert verify_password(PASSWORD, load_users(users_file)["ann"].password_hash)

    listed = runner.invoke(cli_app, ["users", "list"])
    assert listed.exit_code == 0, listed.output
    assert "ann" in listed.output
    assert "Ann Smith" in listed.output
    assert "$2b$" not in listed.output

    again = runner.invoke(cli_app, ["users", "add", "ann", "--password-stdin"], input="another password\n")
    assert again.exit_code == 2
    assert "already exists" in again.output
    assert "--replace" in again.output

    removed = runner.invoke(cli_app, ["users", "remove", "ann"])
    assert removed.exit_code == 0, removed.output
    assert "no users left" in removed.output


def test_users_add_prompts_twice_without_echo(users_file: Path) -> None:
    runner = CliRunner()

    result = runner.invoke(cli_app, ["users", "add", "ann"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert verify_password(PASSWORD, load_users(users_file)["ann"].password_hash)

    mismatch = runner.invoke(cli_app, ["users", "add", "bob"], input=f"{PASSWORD}\nsomething else\n")
    assert mismatch.exit_code == 2
    assert "the two passwords differ" in mismatch.output
    assert "bob" not in load_users(users_file)


def test_users_command_errors_are_one_line(users_file: Path) -> None:
    runner = CliRunner()

    short = runner.invoke(cli_app, ["users", "add", "ann", "--password-stdin"], input="short\n")
    assert short.exit_code == 2
    assert "at least 8 characters" in short.output
    assert not users_file.exists()

    missing = runner.invoke(cli_app, ["users", "remove", "ann"])
    assert missing.exit_code == 2
    assert "does not exist" in missing.output
    assert "Traceback" not in missing.output

    empty = runner.invoke(cli_app, ["users", "list"])
    assert empty.exit_code == 0
    assert "runs without sign-in" in empty.output


# -- the gate ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def seeded(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    found = seed_dashboard(database, tmp_path / "results")
    monkeypatch.setenv("PAPSCREEN_DATABASE_URL", found.url)
    return found


def _app() -> AppTest:
    return run_ok(AppTest.from_file(str(APP_PATH), default_timeout=60))


def _sign_in(app: AppTest, name: str, password: str) -> AppTest:
    app.text_input[0].input(name)
    app.text_input[1].input(password)
    app.button[0].click()
    return run_ok(app)


def _assert_only_the_sign_in_form(app: AppTest, seeded: Seeded) -> None:
    kinds = {node.type for node in (*app.main, *app.sidebar)}
    assert kinds <= SIGN_IN_ELEMENTS, kinds - SIGN_IN_ELEMENTS
    assert not app.dataframe
    assert not app.metric
    assert [t.label for t in app.text_input] == ["Name", "Password"]
    shown = " ".join(str(getattr(node, "value", "")) for node in (*app.main, *app.sidebar))
    for name in seeded.names:
        assert name not in shown
    assert "Open access" not in shown


def test_with_a_users_file_nothing_shows_before_sign_in(seeded: Seeded, users_file: Path) -> None:
    add_user(users_file, "ann", PASSWORD, display_name="Ann Smith", rounds=FAST)

    app = _app()

    _assert_only_the_sign_in_form(app, seeded)
    assert not app.error
    assert app.title[0].value == "papscreen"
    assert open_page(app, "worklist").dataframe == app.dataframe  # asking for a page by hash changes nothing
    _assert_only_the_sign_in_form(app, seeded)


@pytest.mark.parametrize(("name", "password"), [("ann", "wrong password"), ("nobody", PASSWORD), ("", "")], ids=repr)
def test_wrong_credentials_are_refused_without_saying_which(
    seeded: Seeded, users_file: Path, name: str, password: str
) -> None:
    add_user(users_file, "ann", PASSWORD, rounds=FAST)

    app = _sign_in(_app(), name, password)

    assert [e.value for e in app.error] == ["wrong name or password"]
    _assert_only_the_sign_in_form(app, seeded)
    assert auth.SESSION_USER_KEY not in app.session_state


def test_correct_credentials_open_the_dashboard_and_sign_out_closes_it(
    seeded: Seeded, users_file: Path, database: Database
) -> None:
    add_user(users_file, "ann", PASSWORD, display_name="Ann Smith", rounds=FAST)

    app = _sign_in(_app(), " ann ", PASSWORD)

    assert not app.error, [e.value for e in app.error]
    assert app.title[0].value == "Overview"
    assert app.metric
    assert app.session_state[auth.SESSION_USER_KEY] == "ann"
    sidebar = " ".join(m.value for m in app.sidebar.markdown)
    assert "Signed in as **Ann Smith** (`ann`), cytotechnologist" in sidebar
    assert not app.sidebar.info  # no open-access notice

    app.sidebar.button(key="papscreen-sign-out").click().run()

    assert auth.SESSION_USER_KEY not in app.session_state
    _assert_only_the_sign_in_form(app, seeded)
    _sign_in(app, "ann", "not her password")
    with database.session() as session:  # every door event is in the audit log, failures too
        events = queries.list_events(session, entity_type="user")
    assert [(e.action, e.actor, e.details.get("reason")) for e in reversed(events)] == [
        ("user.signed_in", "ann", "password"),
        ("user.signed_out", "ann", None),
        ("user.sign_in_failed", "ann", "wrong name or password"),
    ]


def test_a_removed_user_is_signed_out_at_the_next_run(seeded: Seeded, users_file: Path) -> None:
    add_user(users_file, "ann", PASSWORD, rounds=FAST)
    add_user(users_file, "bob", PASSWORD, rounds=FAST)
    app = _sign_in(_app(), "ann", PASSWORD)
    assert app.title[0].value == "Overview"

    remove_user(users_file, "ann")
    app.run()

    _assert_only_the_sign_in_form(app, seeded)


def test_a_malformed_users_file_lets_nobody_in(seeded: Seeded, users_file: Path) -> None:
    users_file.parent.mkdir(parents=True, exist_ok=True)
    users_file.write_text("[users.ann]\npassword_hash = 'secret'\n")

    app = _app()

    assert len(app.error) == 1
    assert "password_hash is not a bcrypt hash" in app.error[0].value
    assert not app.text_input
    assert not app.dataframe
    assert not app.metric


def test_an_empty_users_file_lets_nobody_in_and_says_why(seeded: Seeded, users_file: Path) -> None:
    add_user(users_file, "ann", PASSWORD, rounds=FAST)
    remove_user(users_file, "ann")

    app = _app()

    _assert_only_the_sign_in_form(app, seeded)
    assert "has no users" in app.error[0].value


def test_without_a_users_file_the_sidebar_says_open_access(seeded: Seeded, users_file: Path) -> None:
    app = _app()

    notice = app.sidebar.info[0].value
    assert notice.startswith(f"Open access: no users file ({users_file}); reviews are recorded as 'dashboard'")
    assert app.title[0].value == "Overview"
    assert not app.text_input


def test_a_review_is_recorded_under_the_signed_in_user(seeded: Seeded, users_file: Path, database: Database) -> None:
    add_user(users_file, "ann", PASSWORD, rounds=FAST)
    app = _sign_in(_app(), "ann", PASSWORD)
    app.session_state["papscreen_slide_id"] = seeded.hsil_slide
    open_page(app, "slide")
    assert app.title[0].value == "hsil-case.png"

    cell_id = app.selectbox(key=f"slide_{seeded.hsil_slide}_review_cell").value
    app.radio(key=f"slide_{seeded.hsil_slide}_cell_{cell_id}_label").set_value("LSIL")
    app.button(key=f"slide_{seeded.hsil_slide}_save").click()
    run_ok(app)

    assert any("recorded as ann" in s.value for s in app.success)
    with database.session() as session:
        cell = session.get(Cell, cell_id)
        assert cell is not None
        assert (cell.reviewer_label, cell.reviewer, cell.predicted_class) == ("LSIL", "ann", "HSIL")
        assert cell.reviewed_at is not None
        retraining_sees = [(c.cell_id, c.label) for c in queries.reviewed_cells(session)]
        assert retraining_sees == [(cell_id, "LSIL")]


def test_the_throttle_slows_each_failure_and_locks_a_name_after_five() -> None:
    now = [1000.0]
    throttle = auth.SignInThrottle(max_failures=5, lockout_seconds=900, clock=lambda: now[0])
    delays = [throttle.delay_after_failure("Ann ") for _ in range(5)]
    assert delays == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert throttle.locked_for("ann") == 900  # names are matched as typed, case and spaces aside
    assert throttle.locked_for("bob") == 0
    now[0] += 901
    assert throttle.locked_for("ann") == 0  # the lock passes by itself
    throttle.delay_after_failure("ann")
    throttle.succeeded("ann")
    assert throttle.locked_for("ann") == 0


def test_a_locked_name_cannot_sign_in_even_with_the_right_password(seeded: Seeded, users_file: Path) -> None:
    add_user(users_file, "ann", PASSWORD, rounds=FAST)
    throttle = auth._server_throttle()  # the dashboard server's own, shared by every session
    for _ in range(auth.LOCKOUT_FAILURES):
        throttle.delay_after_failure("ann")
    try:
        app = _sign_in(_app(), "ann", PASSWORD)
        assert [e.value for e in app.error] == ["too many failed sign-ins for this name: try again in 15 min"]
        assert auth.SESSION_USER_KEY not in app.session_state
    finally:
        throttle.succeeded("ann")
