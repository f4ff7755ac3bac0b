"""The one exception type for user mistakes: the CLI turns it into a one-line message and exit code 2."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from typing import Any

#: The most characters of a user's value a message quotes.
QUOTE_LIMIT = 80


class UserError(Exception):
    """A mistake the user can fix: bad config, bad flag, unknown study. The message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def quote(value: Any, *, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for a message, at most ``limit`` characters (a longer one is cut, ending ``...``).

    Works in bounded time on any value: a huge or deeply nested one is summarized, not walked.
    """
    shortener = reprlib.Repr()
    shortener.maxlevel, shortener.maxstring, shortener.maxother, shortener.maxlong = 3, limit, limit, limit
    try:
        text = shortener.repr(value)
    except ValueError:  # an int too long for Python to write out in decimal
        text = f"<a number of {value.bit_length() * 0.30103:.0f} digits>" if isinstance(value, int) else "<unprintable>"
    return shorten(text, limit=limit)


def shorten(text: str, *, limit: int = QUOTE_LIMIT) -> str:
    """``text`` on one line, at most ``limit`` characters (a longer one is cut, ending ``...``)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def did_you_mean(word: str, options: Iterable[Any]) -> str:
    """Return "; did you mean 'x'?" for the closest option, or the list of options when none is close.

    ``word`` itself is never offered (it was refused), and options of any type are compared as text.
    """
    choices = sorted({str(option) for option in options} - {word})
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {quote(close[0])}?"
    return f"; choose from {shorten(', '.join(shorten(c, limit=40) for c in choices), limit=240)}" if choices else ""
