"""Credentials as an operator manages them: handed over in 0600 files, one user at a time."""

from __future__ import annotations

import json
import stat

import pytest

from lastwatt.auth import (
    CredentialsError,
    Role,
    add_user,
    init_credentials,
    load_credentials,
    remove_user,
    rotate_webhook_secret,
    write_secret_file,
)
from lastwatt.cli import main


def _hashes(data_dir):
    document = json.loads((data_dir / "credentials.json").read_text())
    return {n: u["hash"] for n, u in document["users"].items()}, document["webhook_secret"]


def test_adding_and_removing_a_user_rotates_nobody_else(tmp_path, capsys):
    plain = init_credentials(tmp_path, {"amina": "H001"})
    before, secret = _hashes(tmp_path)
    assert main(["users", "add", "baraka", "--household", "H002", "--data-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    password = (tmp_path / "secrets" / "baraka").read_text().strip()
    assert password not in printed
    after, secret_after = _hashes(tmp_path)
    assert {n: after[n] for n in before} == before
    assert secret_after == secret
    credentials = load_credentials(tmp_path)
    assert credentials.check("baraka", password).household == "H002"
    assert credentials.check("amina", plain["amina"]) is not None
    assert main(["users", "remove", "amina", "--data-dir", str(tmp_path)]) == 0
    after_removal, secret_after = _hashes(tmp_path)
    assert set(after_removal) == {"operator", "baraka"}
    assert after_removal["baraka"] == after["baraka"]
    assert secret_after == secret


def test_init_with_a_new_resident_adds_only_that_resident(tmp_path):
    init_credentials(tmp_path, {"amina": "H001"})
    before, secret = _hashes(tmp_path)
    args = ["serve", "--init", "--data-dir", str(tmp_path), "--resident", "amina=H001"]
    assert main([*args, "--resident", "baraka=H002"]) == 0
    after, secret_after = _hashes(tmp_path)
    assert {n: after[n] for n in before} == before
    assert secret_after == secret
    assert "baraka" in after
    # --force is the one way to rotate everything, and it does.
    assert main([*args, "--force"]) == 0
    rotated, secret_rotated = _hashes(tmp_path)
    assert rotated["operator"] != before["operator"]
    assert secret_rotated != secret


def test_the_last_operator_cannot_be_removed(tmp_path, capsys):
    init_credentials(tmp_path)
    assert main(["users", "remove", "operator", "--data-dir", str(tmp_path)]) == 2
    assert "last operator" in capsys.readouterr().err
    add_user(tmp_path, "night", Role.OPERATOR)
    remove_user(tmp_path, "operator")
    assert [u.name for u in load_credentials(tmp_path).users] == ["night"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["users", "add", "x", "--household", "H999"], "not a household of the site"),
        (["users", "add", "bad name!", "--operator"], "use 1–64 letters"),
        (["users", "add", "operator", "--operator"], "exists"),
        (["users", "remove", "nobody"], "no user 'nobody'"),
    ],
)
def test_bad_user_commands_are_named(tmp_path, capsys, argv, message):
    init_credentials(tmp_path)
    assert main([*argv, "--data-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_users_on_a_missing_data_dir_say_how_to_start(tmp_path, capsys):
    assert main(["users", "list", "--data-dir", str(tmp_path / "none")]) == 2
    assert "lastwatt serve --init" in capsys.readouterr().err


def test_webhook_secret_rotates_alone_and_the_environment_overrides_it(tmp_path):
    init_credentials(tmp_path, {"amina": "H001"})
    before, secret = _hashes(tmp_path)
    new = rotate_webhook_secret(tmp_path)
    after, stored = _hashes(tmp_path)
    assert after == before
    assert stored == new != secret
    assert load_credentials(tmp_path).webhook_secret == bytes.fromhex(new)
    assert load_credentials(tmp_path, "ab" * 32).webhook_secret == bytes.fromhex("ab" * 32)
    with pytest.raises(CredentialsError, match="not hex"):
        load_credentials(tmp_path, "not-hex")


def test_secret_files_are_owner_only_from_the_start(tmp_path):
    path = write_secret_file(tmp_path / "s" / "x", "secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_a_corrupt_credentials_file_is_named(tmp_path):
    (tmp_path / "credentials.json").write_text("{not json")
    with pytest.raises(CredentialsError, match="not a credentials file"):
        load_credentials(tmp_path)
