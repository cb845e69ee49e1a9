"""The control API's token: read from an owner-only file, checked per request."""

from __future__ import annotations

import hmac
import os
import stat

from pokan.errors import ConfigurationError

#: a token file holds one line; anything much larger is not a token file
MAX_TOKEN_FILE = 4096
#: fewer characters than this is too easy to guess
MIN_TOKEN_LEN = 16

MAKE_ONE = (
    "make one with `pokan keygen > FILE && chmod 600 FILE` (any line of 16 or"
    " more printable characters will do)"
)


class TokenFileError(ConfigurationError):
    """A token file is refused; the message says why and what to do."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"control token file {path!r}: {problem}")
        self.path = path


def read_token_file(path: str) -> str:
    """The token in ``path``: its first line, from a file only its owner can use."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise TokenFileError(path, f"no such file; {MAKE_ONE}") from None
    except OSError as e:
        raise TokenFileError(path, f"cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise TokenFileError(path, "not a regular file")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise TokenFileError(
            path,
            f"group or others may use it (mode {mode:04o}): run chmod 600 {path}",
        )
    if info.st_size > MAX_TOKEN_FILE:
        raise TokenFileError(
            path, f"{info.st_size} bytes, over {MAX_TOKEN_FILE}: it holds one line"
        )
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOKEN_FILE + 1)
    except OSError as e:
        raise TokenFileError(path, f"cannot be read ({e.strerror})") from None
    lines = data.decode("utf-8", "replace").strip().splitlines()
    token = lines[0].strip() if lines else ""
    if len(token) < MIN_TOKEN_LEN or not token.isprintable() or " " in token:
        raise TokenFileError(
            path,
            f"its first line must be a token of {MIN_TOKEN_LEN} or more printable"
            f" characters without spaces; {MAKE_ONE}",
        )
    return token


class BearerCheck:
    """``Authorization: Bearer <token>``, compared in constant time."""

    def __init__(self, token: str) -> None:
        self._expected = b"Bearer " + token.encode("utf-8")

    def allows(self, header: bytes | None) -> bool:
        return header is not None and hmac.compare_digest(header, self._expected)
