"""One masking function for every URL that reaches output: passwords in the user info (with an
unescaped '@', percent-encoded, in a URL that does not parse) and in query parameters."""

from __future__ import annotations

import re

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpstudy.storage.masking import check_secrets, mask_text, mask_url
from hpstudy.storage.stored_config import CONFIG_ATTR, stored_config
from hpstudy.storage.urls import redact, storage_option
from hpstudy.study.cli import main
from hpstudy.study.config import load_config
from hpstudy.study.errors import UserError

SECRET = "Secret123x"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://alice:s3cret@h/db", "postgresql://alice:***@h/db"),
        ("postgresql://u:p@ss@host/db", "postgresql://u:***@host/db"),  # not 'ss@host'
        ("postgresql://u:a@b/c@host:5432/db?x=1", "postgresql://u:***@host:5432/db?x=1"),
        ("postgresql://u:p%40ss%3A@host/db", "postgresql://u:***@host/db"),
        ("postgresql://u:a/b:c@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql//u:pw@host/db", "postgresql//u:***@host/db"),  # does not parse: masked all the same
        ("postgresql:/u:pw@host/db", "postgresql:***@host/db"),
        ("mysql+pymysql://u:pw@h/db?charset=utf8", "mysql+pymysql://u:***@h/db?charset=utf8"),
        ("postgresql://u@h/db?password=pw&sslmode=require", "postgresql://u@h/db?password=***&sslmode=require"),
        ("postgresql://u@h/db?sslpassword=a&b&port=5", "postgresql://u@h/db?sslpassword=***&port=5"),
        ("postgresql://u@h/db?pass%77ord=pw", "postgresql://u@h/db?pass%77ord=***"),
    ],
)
def test_passwords_are_masked_wherever_the_url_holds_them(url, shown):
    assert mask_url(url) == shown
    assert redact(url) == shown
    assert mask_url(shown) == shown  # masking twice changes nothing


@pytest.mark.parametrize("key", ["password", "PASSWORD", "Passwd", "pwd", "sslpassword", "token", "auth_token",
                                 "secret", "client_secret", "key", "api_key", "apikey"])
def test_secret_query_parameters_are_masked_whatever_their_case(key):
    assert mask_url(f"postgresql://u@h/db?sslmode=require&{key}={SECRET}") == \
        f"postgresql://u@h/db?sslmode=require&{key}=***"


@pytest.mark.parametrize("url", ["sqlite:///x.db", "sqlite:////tmp/a@b:c.db", "postgresql://u@h:5432/db",
                                 "postgresql://u@h/db?application_name=me@x&sslmode=require",
                                 "postgresql://u@h/db?sslkey=/home/u/client.key", "::nonsense::"])
def test_urls_without_secrets_are_shown_as_written(url):
    assert mask_url(url) == url


PASSWORD_CHARS = st.characters(codec="utf-8", exclude_characters="?\n\r")


@settings(max_examples=100, deadline=None)
@given(password=st.text(PASSWORD_CHARS, min_size=1, max_size=30),
       query_secret=st.text(st.characters(codec="utf-8", exclude_characters="&;\n\r"), min_size=1, max_size=30))
def test_no_password_survives_masking(password, query_secret):
    url = f"postgresql://user:{password}@db.example:5432/studies?sslmode=require&sslpassword={query_secret}"
    shown = "postgresql://user:***@db.example:5432/studies?sslmode=require&sslpassword=***"
    assert mask_url(url) == shown
    if not re.search(r"[\s'\"]", password + query_secret):  # a URL quoted in text ends at a space or quote
        assert mask_text(f"cannot open storage '{url}' (refused)") == f"cannot open storage '{shown}' (refused)"


def test_text_masks_urls_query_pairs_and_the_secrets_of_the_urls_in_use():
    url = f"postgresql://u:{SECRET}@h/db"
    message = (f"storage '{url}' failed; query option 'password={SECRET}' refused; "
               f"the driver said: bad password {SECRET} (password={SECRET})")
    masked = mask_text(message, urls=(url, None))
    assert SECRET not in masked
    assert masked.startswith("storage 'postgresql://u:***@h/db' failed; query option 'password=***' refused")


def test_a_masked_or_unescaped_password_is_refused_before_it_reaches_a_server():
    with pytest.raises(UserError, match=r"has its password masked \(\*\*\*\).*\$HPSTUDY_STORAGE.*--storage"):
        check_secrets("postgresql://u:***@h/db")
    with pytest.raises(UserError, match="has its password masked"):
        check_secrets("postgresql://u@h/db?password=***")
    with pytest.raises(UserError, match=r"holds an '@', which a URL must write as %40") as refused:
        check_secrets(f"postgresql://u:{SECRET[:3]}@{SECRET[3:]}@h/db")
    assert SECRET[3:] not in str(refused.value)
    for fine in ("postgresql://u:p%40ss@h/db", "postgresql://u@h/db?application_name=me@x", "sqlite:///a@b.db"):
        check_secrets(fine)


def test_a_printed_command_never_names_a_password(monkeypatch):
    monkeypatch.delenv("HPSTUDY_STORAGE", raising=False)
    assert storage_option(f"postgresql://u:{SECRET}@h/db?token={SECRET}") == " --storage postgresql://u:***@h/db?token=***"


def test_a_config_stored_by_an_older_version_is_read_back_masked():
    cfg = load_config(preset="default").to_dict()
    created = optuna.create_study()
    created.set_user_attr(CONFIG_ATTR, {**cfg, "storage": f"postgresql://u:***@h/db?password={SECRET}"})
    assert stored_config(created).storage == "postgresql://u:***@h/db?password=***"


def test_errors_of_every_kind_show_no_password(tmp_path, monkeypatch, capsys):
    """In process: a SQLite URL with a password option, an unparseable URL, a refused driver; the
    printed config masks the password, and run of that file refuses it in one line."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPSTUDY_STORAGE", raising=False)
    for url in (f"sqlite:///x.db?password={SECRET}", f"sqlite://u:{SECRET}@/:memory:",
                f"postgresql+pgfoo://u:{SECRET}@h/db", f"postgresql//u:{SECRET}@h/db", f"u:{SECRET}@h/x.db"):
        assert main(["list", "--storage", url]) == 2
        err = capsys.readouterr().err
        assert SECRET not in err and err.count("\n") == 1, err
    assert main(["run", "--print-config", "--set", f"storage=postgresql://u:{SECRET}@h/db"]) == 0
    printed = capsys.readouterr().out
    assert SECRET not in printed and "storage: postgresql://u:***@h/db" in printed and "$HPSTUDY_STORAGE" in printed
    (tmp_path / "printed.yaml").write_text(printed)
    assert main(["run", "printed.yaml"]) == 2
    err = capsys.readouterr().err
    assert "has its password masked" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["printed.yaml"]
