"""Standard output that fails in one line: `hpstudy spaces > /dev/full` is an environment problem
the user can fix (free space, send the output elsewhere), not a traceback."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from hpstudy.study.errors import UserError


class StdoutUnwritable(UserError):
    """Writing standard output failed (a full disk, an I/O error); a closed pipe is not this."""

    @classmethod
    def after(cls, exc: OSError) -> StdoutUnwritable:
        """The error for ``exc``, raised by a write or flush of standard output."""
        return cls(f"cannot write standard output ({exc.strerror or type(exc).__name__}); "
                   "free space where it goes, or send it elsewhere")


class _GuardedStream:
    """``stream`` whose write and flush turn an OSError (but a closed pipe's) into
    StdoutUnwritable, after pointing the file descriptor at /dev/null so that Python's own flush
    at exit does not fail again with a message of its own."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        """Write ``text`` to the stream."""
        return self._guarded(self._stream.write, text)

    def flush(self) -> None:
        """Flush the stream."""
        self._guarded(self._stream.flush)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def _guarded(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except BrokenPipeError:  # the reader has gone: the CLI's own handling says nothing
            raise
        except OSError as exc:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
            raise StdoutUnwritable.after(exc) from None


@contextlib.contextmanager
def guarded_stdout() -> Iterator[None]:
    """Within: ``sys.stdout`` fails with StdoutUnwritable instead of an OSError; leaving, what is
    still buffered is flushed, so a failure shows here and not at the interpreter's exit."""
    with contextlib.redirect_stdout(_GuardedStream(sys.stdout)):  # type: ignore[arg-type]
        yield
        sys.stdout.flush()
