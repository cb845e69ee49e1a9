"""Cluster keys: the keyring, its key file, and the AEAD seal over one message.

A keyring holds one or more 32-byte keys: the first (the *primary*) seals,
every key opens, so a cluster can rotate keys without downtime (see
``docs/security.md``). A sealed blob is::

    key id      4 bytes   (KEY_ID_SIZE: a BLAKE2b digest naming the key)
    nonce      24 bytes   (16-byte random prefix per Sealer + 8-byte counter)
    ciphertext            (the plaintext's length, then the 16-byte tag)

sealed with ChaCha20-Poly1305 (RFC 8439, from ``cryptography``) extended to
the 24-byte nonce as XChaCha20 does with HChaCha20: the subkey is BLAKE2b of
the 16-byte prefix keyed with the key (:func:`subkey`), and the 12-byte nonce
under it is 4 zero bytes and the 8-byte counter. The key id is bound as
associated data after the caller's own. Sans-IO apart from reading the key
file: no reactor, no clock; the nonce source is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from collections import OrderedDict
from collections.abc import Callable, Iterable

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from pokan.errors import ConfigurationError, DecodeError

KEY_SIZE = 32
KEY_ID_SIZE = 4
NONCE_SIZE = 24
TAG_SIZE = 16
SEAL_OVERHEAD = KEY_ID_SIZE + NONCE_SIZE + TAG_SIZE

#: the random part of a nonce, drawn once per Sealer; the rest is a counter
NONCE_PREFIX_SIZE = 16
NONCE_COUNTER_SIZE = NONCE_SIZE - NONCE_PREFIX_SIZE
_COUNTER_LIMIT = 2 ** (8 * NONCE_COUNTER_SIZE)

#: a key file larger than this is refused unread (it holds a few short lines)
MAX_KEY_FILE_SIZE = 64 * 1024

#: the (key, prefix) ciphers an opener keeps, least recently used dropped
OPEN_CACHE_SIZE = 4096

_KEY_ID_PERSON = b"pokan-key-id"
_SUBKEY_PERSON = b"pokan-subkey"
#: what precedes the counter in the 12-byte ChaCha20-Poly1305 nonce
_INNER_NONCE_PAD = bytes(12 - NONCE_COUNTER_SIZE)


class KeyFileError(ConfigurationError):
    """A key file is refused; the message is one line: path, problem, remedy."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"key file {_printable(path)}: {problem}")
        self.path = path
        self.problem = problem


class SealError(DecodeError):
    """A sealed blob cannot be opened.

    ``reason`` is ``truncated``, ``unknown-key`` or ``unauthenticated``.
    """


def generate_key() -> str:
    """A fresh key: 32 random bytes in standard, padded base64."""
    return base64.b64encode(os.urandom(KEY_SIZE)).decode("ascii")


def key_id(key: bytes) -> bytes:
    """The KEY_ID_SIZE bytes naming ``key`` on the wire: a digest, not the key."""
    return hashlib.blake2b(key, digest_size=KEY_ID_SIZE, person=_KEY_ID_PERSON).digest()


def subkey(key: bytes, prefix: bytes) -> bytes:
    """The ChaCha20-Poly1305 key of the nonces of ``prefix`` under ``key``.

    BLAKE2b keyed with ``key`` as a PRF of the prefix, 32 bytes: the extended
    nonce construction (XChaCha20 uses HChaCha20 in this place).
    """
    return hashlib.blake2b(
        prefix, key=key, digest_size=KEY_SIZE, person=_SUBKEY_PERSON
    ).digest()


def _cipher(key: bytes, prefix: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(subkey(key, prefix))


def _as_key_tuple(keys: Iterable[bytes]) -> tuple[bytes, ...]:
    if isinstance(keys, bytes | str):
        raise ConfigurationError("a keyring takes a sequence of keys, not one key")
    return tuple(keys)


@attrs.frozen(repr=False)
class Keyring:
    """The cluster keys: the first seals, every key opens.

    Its repr and :meth:`describe` show fingerprints only, never a key.
    """

    keys: tuple[bytes, ...] = attrs.field(converter=_as_key_tuple)
    _ids: tuple[bytes, ...] = attrs.field(init=False, eq=False)

    def __attrs_post_init__(self) -> None:
        if not self.keys:
            raise ConfigurationError("a keyring needs at least one key")
        for position, key in enumerate(self.keys, 1):
            if not isinstance(key, bytes) or len(key) != KEY_SIZE:
                raise ConfigurationError(
                    f"key {position} of the keyring is not {KEY_SIZE} bytes"
                )
        if len(set(self.keys)) != len(self.keys):
            raise ConfigurationError("a keyring holds the same key twice")
        object.__setattr__(self, "_ids", tuple(key_id(k) for k in self.keys))

    @property
    def primary(self) -> bytes:
        """The key that seals."""
        return self.keys[0]

    @property
    def primary_id(self) -> bytes:
        return self._ids[0]

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """Each key's id in hex (8 characters): safe to log."""
        return tuple(i.hex() for i in self._ids)

    def key_id(self, key: bytes) -> bytes:
        """The KEY_ID_SIZE bytes naming ``key`` on the wire."""
        return key_id(key)

    def keys_with_id(self, wanted: bytes) -> list[bytes]:
        """The keys of this ring named ``wanted`` (normally one, or none)."""
        return [k for k, i in zip(self.keys, self._ids, strict=True) if i == wanted]

    def describe(self) -> str:
        """For logs, e.g. ``2 keys: 1a2b3c4d (encrypts), 5e6f7a8b``."""
        first, *others = self.fingerprints
        count = len(self.keys)
        names = ", ".join([f"{first} (encrypts)", *others])
        return f"{count} key{'s' if count > 1 else ''}: {names}"

    def __repr__(self) -> str:
        return f"<Keyring {self.describe()}>"


class Sealer:
    """Seals and opens with a keyring; owns the nonce source.

    ``keyring`` may be replaced at any time (a key reload): the nonce prefix
    and counter stay, so no nonce repeats under a key kept across reloads.

    The cipher of a (key, prefix) is built once: this Sealer's own, and on
    the opening side up to :data:`OPEN_CACHE_SIZE` of the senders' (least
    recently used dropped), each kept only once a message under it opens, so
    forged prefixes cost a derivation each and hold no memory.
    """

    def __init__(
        self, keyring: Keyring, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._random_bytes = random_bytes
        self._prefix = self._draw_prefix()
        self._counter = 0
        self.keyring = keyring

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    @keyring.setter
    def keyring(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._sealing: ChaCha20Poly1305 | None = None
        self._opening: OrderedDict[tuple[bytes, bytes], ChaCha20Poly1305] = (
            OrderedDict()
        )

    def _draw_prefix(self) -> bytes:
        prefix = self._random_bytes(NONCE_PREFIX_SIZE)
        if len(prefix) != NONCE_PREFIX_SIZE:
            raise ValueError(
                f"random_bytes gave {len(prefix)} bytes, not {NONCE_PREFIX_SIZE}"
            )
        return prefix

    def _next_nonce(self) -> bytes:
        if self._counter == _COUNTER_LIMIT:  # 2^64 seals: never in practice
            self._prefix, self._counter = self._draw_prefix(), 0
            self._sealing = None
        nonce = self._prefix + self._counter.to_bytes(NONCE_COUNTER_SIZE, "big")
        self._counter += 1
        return nonce

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """``key id + nonce + ciphertext and tag``, under the primary key.

        ``aad`` is authenticated, not sent: the opener must pass the same.
        """
        ring = self._keyring
        kid = ring.primary_id
        nonce = self._next_nonce()
        cipher = self._sealing
        if cipher is None:
            cipher = self._sealing = _cipher(ring.primary, self._prefix)
        inner = _INNER_NONCE_PAD + nonce[NONCE_PREFIX_SIZE:]
        return kid + nonce + cipher.encrypt(inner, plaintext, aad + kid)

    def open(self, aad: bytes, sealed: bytes) -> tuple[bytes, bytes]:
        """``(plaintext, nonce)`` of a sealed blob; SealError if it does not open."""
        if len(sealed) < SEAL_OVERHEAD:
            raise SealError(
                "truncated",
                f"{len(sealed)} bytes, under the {SEAL_OVERHEAD} of a seal",
            )
        kid = sealed[:KEY_ID_SIZE]
        nonce = sealed[KEY_ID_SIZE : KEY_ID_SIZE + NONCE_SIZE]
        keys = self._keyring.keys_with_id(kid)
        if not keys:
            raise SealError(
                "unknown-key",
                f"sealed with key {kid.hex()}, which this node lacks"
                f" (it has {', '.join(self._keyring.fingerprints)})",
            )
        prefix = nonce[:NONCE_PREFIX_SIZE]
        inner = _INNER_NONCE_PAD + nonce[NONCE_PREFIX_SIZE:]
        ciphertext = sealed[KEY_ID_SIZE + NONCE_SIZE :]
        cache = self._opening
        for key in keys:
            known = cache.get((key, prefix))
            cipher = _cipher(key, prefix) if known is None else known
            try:
                plain = cipher.decrypt(inner, ciphertext, aad + kid)
            except InvalidTag:
                continue
            if known is None:
                cache[key, prefix] = cipher
                if len(cache) > OPEN_CACHE_SIZE:
                    cache.popitem(last=False)
            else:
                cache.move_to_end((key, prefix))
            return plain, nonce
        raise SealError("unauthenticated", f"the tag fails under key {kid.hex()}")

    @staticmethod
    def nonce_parts(nonce: bytes) -> tuple[bytes, int]:
        """``(prefix, counter)`` of a nonce: the prefix names one Sealer's start."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"a nonce is {NONCE_SIZE} bytes, not {len(nonce)}")
        prefix = nonce[:NONCE_PREFIX_SIZE]
        return prefix, int.from_bytes(nonce[NONCE_PREFIX_SIZE:], "big")


# -- the key file ------------------------------------------------------------------


def read_key_file(path: str) -> Keyring:
    """The keyring in ``path``: one base64 key per line, ``#`` comments allowed.

    Raises KeyFileError (one line naming the path, the problem and the
    remedy) if the file is missing, not a regular file, unreadable, open to
    group or others, too large, malformed (by line number, never its text),
    holds a key twice, or holds no key.
    """
    data = _read_private_file(path)
    keys: list[bytes] = []
    seen: dict[bytes, int] = {}
    for number, raw in enumerate(data.split(b"\n"), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(
                path,
                f"line {number} is not valid base64: each key line is the"
                " output of `pokan keygen`",
            ) from None
        if len(key) != KEY_SIZE:
            raise KeyFileError(
                path,
                f"line {number} decodes to {len(key)} bytes, not {KEY_SIZE}:"
                " each key line is the output of `pokan keygen`",
            )
        if key in seen:
            raise KeyFileError(
                path,
                f"the same key on lines {seen[key]} and {number}: remove one of them",
            )
        seen[key] = number
        keys.append(key)
    if not keys:
        raise KeyFileError(
            path, f"no key in it: add one with `pokan keygen >> {_printable(path)}`"
        )
    return Keyring(tuple(keys))


def _read_private_file(path: str) -> bytes:
    """The bytes of ``path`` if it is a regular file that only its owner can use."""
    shown = _printable(path)
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise KeyFileError(
            path,
            "no such file: create it with"
            f" `pokan keygen > {shown} && chmod 600 {shown}`",
        ) from None
    except PermissionError:
        raise KeyFileError(
            path,
            "cannot be read by this user: make it owned by the user pokan runs"
            f" as (chown) with mode 600 (chmod 600 {shown})",
        ) from None
    except OSError as e:
        raise KeyFileError(
            path, f"cannot be opened ({e.strerror}): check the path"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(
                path, "not a regular file: point the key file option at a file"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            opened = (
                "readable" if mode & 0o044 else "writable" if mode & 0o022 else "usable"
            )
            raise KeyFileError(
                path,
                f"{opened} by group or others (mode {mode:04o}): run chmod 600 {shown}",
            )
        if info.st_size > MAX_KEY_FILE_SIZE:
            raise KeyFileError(
                path,
                f"{info.st_size} bytes, over the {MAX_KEY_FILE_SIZE} a key file"
                " may hold: it should hold a few key lines",
            )
        chunks = []
        size = 0
        while size <= MAX_KEY_FILE_SIZE:
            chunk = os.read(fd, MAX_KEY_FILE_SIZE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_KEY_FILE_SIZE:
            raise KeyFileError(
                path,
                f"over the {MAX_KEY_FILE_SIZE} bytes a key file may hold:"
                " it should hold a few key lines",
            )
        return b"".join(chunks)
    except OSError as e:
        raise KeyFileError(
            path, f"cannot be read ({e.strerror}): check the file"
        ) from None
    finally:
        os.close(fd)


def _printable(path: str) -> str:
    """``path`` as is, or its repr if it holds characters that could break a line."""
    return path if path.isprintable() else repr(path)
