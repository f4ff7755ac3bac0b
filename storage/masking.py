"""Masking the secrets of storage URLs: one place that decides what of a URL may be shown.

A URL carries a password in its user info (``postgresql://user:PASSWORD@host/db``) or in its
query (``?password=...``, ``?sslpassword=...``, ``?token=...``). ``mask_url`` replaces both with
``***`` and works on the raw text, so a URL that does not parse, a password with an unescaped
``@`` and percent-encoded names are masked too. ``mask_text`` masks every URL quoted in a message
or a traceback, and ``check_secrets`` refuses a URL that cannot log in as written: one whose
password is the mask itself (copied from hpstudy's output) or holds an unescaped ``@``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus

from hpstudy.storage import STORAGE_ENV
from hpstudy.study.errors import UserError

#: What a secret is shown as.
MASK = "***"
#: Query keys (lower case, percent-decoded) whose value is a secret when they contain one of these.
_SECRET_KEY_PARTS = ("pass", "pwd", "token", "secret", "credential", "apikey", "api_key", "access_key",
                     "private_key")
#: ... or when they are one of these.
_SECRET_KEYS = frozenset({"key", "auth"})
#: SQLAlchemy's reading of a URL's user info: a user without ``:`` or ``/``, then ``:PASSWORD@``
#: with a password that runs to the first ``@``.
_USERINFO = re.compile(r"(?P<user>[^:/]*):(?P<password>[^@]*)@")
#: A query pair in a whole URL: the value runs to the next ``&key=`` (an unescaped ``&`` in a
#: password stays masked), or to the end.
_URL_PAIR = re.compile(r"(?P<lead>[?&;])(?P<key>[^=&?;#\s]+)=(?P<value>(?:[^&;]|[&;](?![^=&?;#\s]+=))*)")
#: A query pair (or a ``key=value`` of a driver's message) quoted in text: the value also ends at
#: white space or a quote.
_TEXT_PAIR = re.compile(r"(?P<lead>^|[?&;\s(,'\"])(?P<key>[^=&?;#\s'\"]+)=(?P<value>[^&;\s'\"]*)")
#: A URL quoted in text: a scheme, ``://`` and everything up to white space or a quote.
_TEXT_URL = re.compile(r"[A-Za-z][\w+.-]*://[^\s'\"]*")
#: Secrets shorter than this are not searched for as bare words in text (they would mask letters
#: of ordinary words); the URLs that hold them are still masked.
_MIN_BARE_SECRET = 4


def mask_url(url: str) -> str:
    """``url`` with its password (user info) and the values of its secret query parameters
    replaced by ``***``; safe to print, log, store or write into a report. Works on the raw text:
    a string that does not parse as a URL is masked the same way, and one with no secret is
    returned unchanged."""
    return _mask_pairs(_mask_userinfo(url), _URL_PAIR)


def mask_text(text: str, *, urls: tuple[str | None, ...] = ()) -> str:
    """``text`` (a message, a traceback) with every URL in it masked (``mask_url``), every secret
    query pair masked, and every secret of ``urls`` (the storage URLs in use) replaced by ``***``
    wherever it appears, e.g. inside a driver's message."""
    masked = _mask_pairs(_TEXT_URL.sub(lambda match: mask_url(match.group()), text), _TEXT_PAIR)
    bare = {secret for url in urls if url for secret in url_secrets(url) if len(secret) >= _MIN_BARE_SECRET}
    for secret in sorted(bare, key=len, reverse=True):
        masked = masked.replace(secret, MASK)
    return masked


def url_secrets(url: str) -> set[str]:
    """The secrets of ``url`` as written and percent-decoded: its password and the values of its
    secret query parameters."""
    found = {_userinfo_password(url) or "", *(pair.group("value") for pair in _secret_pairs(url, _URL_PAIR))}
    return {form for secret in found if secret for form in (secret, unquote(secret), unquote_plus(secret))}


def check_secrets(url: str) -> None:
    """Refuse a URL that cannot log in as written (UserError; the message masks it): its password
    is hpstudy's mask (copied from a printed config, command or report), or holds an ``@`` that
    is not written ``%40`` (the text after it would be taken for the host name)."""
    password = _userinfo_password(url)
    if password == MASK or any(pair.group("value") == MASK for pair in _secret_pairs(url, _URL_PAIR)):
        raise UserError(
            f"storage URL '{_quoted(url)}' has its password masked ({MASK}), as hpstudy prints it; "
            f"put the URL with the real password in ${STORAGE_ENV} or pass it with --storage"
        )
    if password is not None and "@" in password:
        raise UserError(
            f"storage URL '{_quoted(url)}': its password holds an '@', which a URL must write as %40 "
            "(and a '%' as %25); write it so"
        )


def _quoted(url: str) -> str:
    """The masked URL, shortened to about 80 characters for a message."""
    masked = mask_url(url)
    return masked if len(masked) <= 80 else f"{masked[:77]}..."


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """Where the password of ``url``'s user info lies (start, end), or None when it has none.
    Read as SQLAlchemy reads it (the password runs to the first ``@``), then stretched to the last
    ``@`` before the query: an ``@`` after the first is the rest of a password with an unescaped
    ``@`` (``u:p@ss/w@host/db``), which SQLAlchemy would take for the host and database."""
    scheme = url.find("://")
    start = scheme + 3 if scheme >= 0 else (url.find("//") + 2 if "//" in url else 0)
    userinfo = _USERINFO.match(url, start)
    if userinfo is None or not userinfo.group("password"):
        return None
    first_at = userinfo.end() - 1
    query = url.find("?", first_at)
    return userinfo.start("password"), url.rfind("@", first_at, query if query >= 0 else len(url))


def _userinfo_password(url: str) -> str | None:
    span = _userinfo_span(url)
    return None if span is None else url[span[0]:span[1]]


def _mask_userinfo(url: str) -> str:
    span = _userinfo_span(url)
    return url if span is None else f"{url[:span[0]]}{MASK}{url[span[1]:]}"


def _is_secret_key(key: str) -> bool:
    name = unquote_plus(key).strip().lower()
    return name in _SECRET_KEYS or any(part in name for part in _SECRET_KEY_PARTS)


def _secret_pairs(text: str, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    return [pair for pair in pattern.finditer(text) if _is_secret_key(pair.group("key"))]


def _mask_pairs(text: str, pattern: re.Pattern[str]) -> str:
    def masked(pair: re.Match[str]) -> str:
        if not _is_secret_key(pair.group("key")) or not pair.group("value"):
            return pair.group()
        return f"{pair.group('lead')}{pair.group('key')}={MASK}"

    return pattern.sub(masked, text)
