"""The one exception type for user mistakes: the CLI turns it into a one-line message and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake the user can fix: bad config, bad flag, unknown study. The message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """Return "; did you mean 'x'?" for the closest option, or the list of options when none is close."""
    options = sorted(options)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; choose from {', '.join(options)}" if options else ""
