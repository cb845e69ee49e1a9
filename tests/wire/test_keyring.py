"""The keyring, its key file, and the seal: round trips, forgeries, refusals."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
from collections.abc import Callable
from unittest import mock

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from twisted.trial import unittest

from pokan.errors import ConfigurationError, DecodeError
from pokan.wire import keyring
from pokan.wire.keyring import (
    KEY_ID_SIZE,
    KEY_SIZE,
    NONCE_SIZE,
    OPEN_CACHE_SIZE,
    SEAL_OVERHEAD,
    KeyFileError,
    Keyring,
    Sealer,
    SealError,
    generate_key,
    read_key_file,
    subkey,
)

AAD = b"PK\x02\x01\x01pokan"
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
KEY_C = bytes(range(200, 232))


def counting_bytes(start: int = 0) -> Callable[[int], bytes]:
    """A deterministic random_bytes: each call gives the next run of bytes."""
    counter = itertools.count(start)
    return lambda n: bytes(next(counter) % 256 for _ in range(n))


class ConstantsTests(unittest.TestCase):
    def test_the_overhead_is_key_id_nonce_and_tag(self) -> None:
        self.assertEqual(SEAL_OVERHEAD, 44)
        self.assertEqual((KEY_SIZE, KEY_ID_SIZE, NONCE_SIZE), (32, 4, 24))


class KeyringTests(unittest.TestCase):
    def test_the_first_key_is_primary(self) -> None:
        ring = Keyring((KEY_B, KEY_A))
        self.assertEqual(ring.primary, KEY_B)
        self.assertEqual(ring.keys, (KEY_B, KEY_A))

    def test_a_list_is_taken_as_a_tuple(self) -> None:
        self.assertEqual(Keyring([KEY_A, KEY_B]).keys, (KEY_A, KEY_B))  # type: ignore[arg-type]

    def test_refuses_no_key(self) -> None:
        self.assertRaises(ConfigurationError, Keyring, ())

    def test_refuses_a_key_of_the_wrong_size(self) -> None:
        for bad in (b"", KEY_A[:31], KEY_A + b"x", "a" * 32):
            with self.assertRaises(ConfigurationError) as caught:
                Keyring((KEY_A, bad))  # type: ignore[arg-type]
            self.assertIn("key 2", str(caught.exception))

    def test_refuses_one_key_given_bare(self) -> None:
        self.assertRaises(ConfigurationError, Keyring, KEY_A)

    def test_refuses_a_duplicate(self) -> None:
        self.assertRaises(ConfigurationError, Keyring, (KEY_A, KEY_B, KEY_A))

    def test_fingerprint_is_the_key_id_in_hex(self) -> None:
        ring = Keyring((KEY_A, KEY_B))
        self.assertEqual(
            ring.fingerprints, (ring.key_id(KEY_A).hex(), ring.key_id(KEY_B).hex())
        )
        self.assertEqual(len(ring.key_id(KEY_A)), KEY_ID_SIZE)
        self.assertEqual([len(f) for f in ring.fingerprints], [8, 8])
        self.assertNotEqual(ring.fingerprints[0], ring.fingerprints[1])

    def test_fingerprints_describe_and_repr_never_show_a_key(self) -> None:
        for _ in range(50):
            key = base64.b64decode(generate_key())
            ring = Keyring((key,))
            shown = " ".join([*ring.fingerprints, ring.describe(), repr(ring)])
            for form in (
                key.hex(),
                base64.b64encode(key).decode(),
                repr(key),
                key[:4].hex(),
            ):
                self.assertNotIn(form, shown)

    def test_describe(self) -> None:
        a, b, c = Keyring((KEY_A, KEY_B, KEY_C)).fingerprints
        self.assertEqual(
            Keyring((KEY_A, KEY_B, KEY_C)).describe(),
            f"3 keys: {a} (encrypts), {b}, {c}",
        )
        self.assertEqual(Keyring((KEY_A,)).describe(), f"1 key: {a} (encrypts)")

    def test_generate_key_is_32_random_bytes_in_base64(self) -> None:
        keys = {generate_key() for _ in range(20)}
        self.assertEqual(len(keys), 20)
        for text in keys:
            self.assertEqual(len(base64.b64decode(text, validate=True)), KEY_SIZE)
            self.assertEqual(len(text), 44)  # padded


class SealTests(unittest.TestCase):
    def test_round_trip(self) -> None:
        sealer = Sealer(Keyring((KEY_A,)))
        for plain in (b"", b"x", os.urandom(1400)):
            sealed = sealer.seal(AAD, plain)
            self.assertEqual(len(sealed), len(plain) + SEAL_OVERHEAD)
            opened, nonce = Sealer(Keyring((KEY_A,))).open(AAD, sealed)
            self.assertEqual(opened, plain)
            self.assertEqual(nonce, sealed[KEY_ID_SIZE : KEY_ID_SIZE + NONCE_SIZE])

    def test_the_blob_begins_with_the_primary_key_id(self) -> None:
        ring = Keyring((KEY_B, KEY_A))
        sealed = Sealer(ring).seal(AAD, b"hello")
        self.assertEqual(sealed[:KEY_ID_SIZE], ring.key_id(KEY_B))

    def test_the_plaintext_is_not_in_the_blob(self) -> None:
        plain = b"a secret value " * 10
        sealed = Sealer(Keyring((KEY_A,))).seal(AAD, plain)
        self.assertNotIn(b"a secret value", sealed)

    def test_tampering_with_any_byte_fails_unauthenticated(self) -> None:
        sealer = Sealer(Keyring((KEY_A,)))
        sealed = sealer.seal(AAD, b"some gossip, sealed")
        for i in range(KEY_ID_SIZE, len(sealed)):
            for flip in (0x01, 0x80):
                forged = bytearray(sealed)
                forged[i] ^= flip
                with self.assertRaises(SealError) as caught:
                    sealer.open(AAD, bytes(forged))
                self.assertEqual(caught.exception.reason, "unauthenticated", i)

    def test_tampering_with_the_key_id_fails(self) -> None:
        sealer = Sealer(Keyring((KEY_A,)))
        sealed = sealer.seal(AAD, b"gossip")
        for i in range(KEY_ID_SIZE):
            forged = bytearray(sealed)
            forged[i] ^= 0x01
            with self.assertRaises(SealError) as caught:
                sealer.open(AAD, bytes(forged))
            self.assertEqual(caught.exception.reason, "unknown-key")

    def test_a_forged_key_id_of_a_key_in_the_ring_fails_unauthenticated(self) -> None:
        ring = Keyring((KEY_A, KEY_B))
        sealed = Sealer(ring).seal(AAD, b"gossip")
        forged = ring.key_id(KEY_B) + sealed[KEY_ID_SIZE:]
        with self.assertRaises(SealError) as caught:
            Sealer(ring).open(AAD, forged)
        self.assertEqual(caught.exception.reason, "unauthenticated")

    def test_tampering_with_the_aad_fails_unauthenticated(self) -> None:
        sealer = Sealer(Keyring((KEY_A,)))
        sealed = sealer.seal(AAD, b"gossip")
        others = [AAD[:-1], AAD + b"x", b"", AAD.replace(b"pokan", b"other")]
        for i in range(len(AAD)):
            forged = bytearray(AAD)
            forged[i] ^= 0x01
            others.append(bytes(forged))
        for aad in others:
            with self.assertRaises(SealError) as caught:
                sealer.open(aad, sealed)
            self.assertEqual(caught.exception.reason, "unauthenticated")

    def test_truncated(self) -> None:
        sealer = Sealer(Keyring((KEY_A,)))
        sealed = sealer.seal(AAD, b"")
        for length in range(SEAL_OVERHEAD):
            with self.assertRaises(SealError) as caught:
                sealer.open(AAD, sealed[:length])
            self.assertEqual(caught.exception.reason, "truncated")
        self.assertEqual(sealer.open(AAD, sealed)[0], b"")

    def test_a_truncated_payload_fails_unauthenticated(self) -> None:
        sealer = Sealer(Keyring((KEY_A,)))
        sealed = sealer.seal(AAD, b"0123456789")
        for cut in range(1, 11):
            with self.assertRaises(SealError) as caught:
                sealer.open(AAD, sealed[:-cut])
            self.assertEqual(caught.exception.reason, "unauthenticated")

    def test_a_ring_without_the_senders_key_fails_unknown_key(self) -> None:
        sealed = Sealer(Keyring((KEY_A,))).seal(AAD, b"gossip")
        ring = Keyring((KEY_B, KEY_C))
        with self.assertRaises(SealError) as caught:
            Sealer(ring).open(AAD, sealed)
        error = caught.exception
        self.assertIsInstance(error, DecodeError)
        self.assertEqual(error.reason, "unknown-key")
        self.assertIn(ring.key_id(KEY_A).hex(), error.detail)
        self.assertIn("lacks", error.detail)

    def test_a_ring_holding_the_old_key_second_opens_what_it_sealed(self) -> None:
        old = Sealer(Keyring((KEY_A,)))
        rotating = Sealer(Keyring((KEY_B, KEY_A)))
        sealed_old = old.seal(AAD, b"sealed with the old key")
        self.assertEqual(rotating.open(AAD, sealed_old)[0], b"sealed with the old key")
        # and the rotating node seals with the new key, which the old ring lacks
        sealed_new = rotating.seal(AAD, b"new")
        self.assertEqual(sealed_new[:KEY_ID_SIZE], rotating.keyring.key_id(KEY_B))
        with self.assertRaises(SealError) as caught:
            old.open(AAD, sealed_new)
        self.assertEqual(caught.exception.reason, "unknown-key")
        # a node with both keys, old first (step one of a rotation), opens both
        both = Sealer(Keyring((KEY_A, KEY_B)))
        self.assertEqual(both.open(AAD, sealed_new)[0], b"new")

    def test_keys_sharing_a_key_id_are_all_tried(self) -> None:
        ring = Keyring((KEY_A, KEY_B))
        same = ring.key_id(KEY_A)
        with mock.patch.object(keyring, "key_id", lambda key: same):
            colliding = Keyring((KEY_B, KEY_A))
            sealed = Sealer(Keyring((KEY_A,))).seal(AAD, b"either")
        self.assertEqual(Sealer(colliding).open(AAD, sealed)[0], b"either")

    def test_the_keyring_can_be_replaced(self) -> None:
        sealer = Sealer(Keyring((KEY_A,)), counting_bytes())
        first = sealer.seal(AAD, b"one")
        sealer.keyring = Keyring((KEY_B, KEY_A))
        second = sealer.seal(AAD, b"two")
        self.assertEqual(second[:KEY_ID_SIZE], sealer.keyring.key_id(KEY_B))
        self.assertEqual(sealer.open(AAD, first)[0], b"one")
        prefix1, count1 = Sealer.nonce_parts(sealer.open(AAD, first)[1])
        prefix2, count2 = Sealer.nonce_parts(sealer.open(AAD, second)[1])
        self.assertEqual((prefix1, count1 + 1), (prefix2, count2))


class NonceTests(unittest.TestCase):
    def test_nonces_never_repeat_and_the_counter_increments(self) -> None:
        sealer = Sealer(Keyring((KEY_A,)))
        nonces = [sealer.open(AAD, sealer.seal(AAD, b"x"))[1] for _ in range(5000)]
        self.assertEqual(len(set(nonces)), len(nonces))
        parts = [Sealer.nonce_parts(n) for n in nonces]
        self.assertEqual({p for p, _ in parts}, {parts[0][0]})
        self.assertEqual([c for _, c in parts], list(range(5000)))
        self.assertEqual(len(parts[0][0]), 16)

    def test_the_prefix_is_drawn_once_from_random_bytes(self) -> None:
        calls: list[int] = []

        def random_bytes(n: int) -> bytes:
            calls.append(n)
            return b"\xaa" * n

        sealer = Sealer(Keyring((KEY_A,)), random_bytes)
        for _ in range(10):
            sealer.seal(AAD, b"x")
        self.assertEqual(calls, [16])
        nonce = sealer.open(AAD, sealer.seal(AAD, b"x"))[1]
        self.assertEqual(nonce, b"\xaa" * 16 + (10).to_bytes(8, "big"))

    def test_two_sealers_have_different_prefixes(self) -> None:
        prefixes = set()
        for _ in range(100):
            sealer = Sealer(Keyring((KEY_A,)))
            prefixes.add(Sealer.nonce_parts(sealer.seal(AAD, b"")[4:28])[0])
        self.assertEqual(len(prefixes), 100)

    def test_the_counter_never_wraps_onto_a_used_nonce(self) -> None:
        sealer = Sealer(Keyring((KEY_A,)), counting_bytes())
        sealer._counter = 2**64 - 1
        last = sealer.open(AAD, sealer.seal(AAD, b"x"))[1]
        after = sealer.open(AAD, sealer.seal(AAD, b"x"))[1]
        self.assertEqual(Sealer.nonce_parts(last)[1], 2**64 - 1)
        self.assertNotEqual(Sealer.nonce_parts(after)[0], Sealer.nonce_parts(last)[0])
        self.assertEqual(Sealer.nonce_parts(after)[1], 0)

    def test_random_bytes_of_the_wrong_length_is_refused(self) -> None:
        self.assertRaises(ValueError, Sealer, Keyring((KEY_A,)), lambda n: b"short")

    def test_nonce_parts(self) -> None:
        nonce = b"p" * 16 + (2**40 + 3).to_bytes(8, "big")
        self.assertEqual(Sealer.nonce_parts(nonce), (b"p" * 16, 2**40 + 3))
        self.assertRaises(ValueError, Sealer.nonce_parts, nonce[:-1])


class CipherTests(unittest.TestCase):
    """The extended nonce: a BLAKE2b subkey per (key, prefix), ChaCha20-Poly1305."""

    PREFIX = bytes(range(0xA0, 0xB0))
    COUNTER = 0x0102030405060708
    PLAIN = b"pokan known answer"
    #: KEY_A, PREFIX, COUNTER, PLAIN, AAD sealed: the wire format, fixed
    KNOWN = bytes.fromhex(
        "a527997b"  # key id of KEY_A
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf0102030405060708"  # prefix, counter
        "62026e902a2040c7b03b0179d6581b3d4126"  # ciphertext
        "a4f34e431346f819c19d5a70c63a8d84"  # tag
    )

    def known_sealer(self) -> Sealer:
        sealer = Sealer(Keyring((KEY_A,)), lambda n: self.PREFIX)
        sealer._counter = self.COUNTER
        return sealer

    def test_known_answer(self) -> None:
        sealed = self.known_sealer().seal(AAD, self.PLAIN)
        self.assertEqual(sealed, self.KNOWN)
        self.assertEqual(Sealer(Keyring((KEY_A,))).open(AAD, sealed)[0], self.PLAIN)

    def test_known_answer_from_the_plain_primitives(self) -> None:
        kid = hashlib.blake2b(KEY_A, digest_size=4, person=b"pokan-key-id").digest()
        key = hashlib.blake2b(
            self.PREFIX, key=KEY_A, digest_size=32, person=b"pokan-subkey"
        ).digest()
        counter = self.COUNTER.to_bytes(8, "big")
        body = ChaCha20Poly1305(key).encrypt(bytes(4) + counter, self.PLAIN, AAD + kid)
        self.assertEqual(kid + self.PREFIX + counter + body, self.KNOWN)

    def test_the_subkey_differs_per_prefix_and_per_key(self) -> None:
        prefixes = [bytes(16), b"\x01" + bytes(15), bytes(15) + b"\x01", b"p" * 16]
        keys = (KEY_A, KEY_B, KEY_C)
        subkeys = {subkey(k, p) for k in keys for p in prefixes}
        self.assertEqual(len(subkeys), len(keys) * len(prefixes))
        self.assertEqual(subkey(KEY_A, b"p" * 16), subkey(KEY_A, b"p" * 16))
        self.assertEqual({len(k) for k in subkeys}, {32})
        self.assertNotIn(KEY_A, subkeys)


def sender(number: int, key: bytes = KEY_A) -> Sealer:
    """A Sealer whose prefix is ``number``: one sender's start."""
    return Sealer(Keyring((key,)), lambda n: number.to_bytes(n, "big"))


class CipherCacheTests(unittest.TestCase):
    def setUp(self) -> None:
        self.built: list[tuple[bytes, bytes]] = []
        real = keyring._cipher

        def counting(key: bytes, prefix: bytes) -> ChaCha20Poly1305:
            self.built.append((key, prefix))
            return real(key, prefix)

        patcher = mock.patch.object(keyring, "_cipher", counting)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_the_senders_cipher_is_built_once_per_primary_key(self) -> None:
        sealer = sender(1)
        for _ in range(10):
            sealer.seal(AAD, b"x")
        self.assertEqual(self.built, [(KEY_A, sender(1)._prefix)])
        sealer.keyring = Keyring((KEY_B, KEY_A))
        for _ in range(10):
            sealer.open(AAD, sealer.seal(AAD, b"x"))
        self.assertEqual([k for k, _ in self.built], [KEY_A, KEY_B, KEY_B])

    def test_a_new_prefix_after_the_counter_wraps_gets_a_new_cipher(self) -> None:
        sealer = Sealer(Keyring((KEY_A,)), counting_bytes())
        sealer._counter = 2**64 - 1
        last = sealer.seal(AAD, b"x")
        after = sealer.seal(AAD, b"x")
        self.assertEqual(len({p for _, p in self.built}), 2)
        opener = Sealer(Keyring((KEY_A,)))
        self.assertEqual([opener.open(AAD, s)[0] for s in (last, after)], [b"x"] * 2)

    def test_an_opener_builds_one_cipher_per_sender(self) -> None:
        opener = Sealer(Keyring((KEY_A,)))
        senders = [sender(n) for n in range(3)]
        sealed = [[one.seal(AAD, b"hi") for _ in range(5)] for one in senders]
        self.built.clear()
        for batch in zip(*sealed, strict=True):
            for blob in batch:
                self.assertEqual(opener.open(AAD, blob)[0], b"hi")
        self.assertEqual(self.built, [(KEY_A, one._prefix) for one in senders])

    def test_the_cache_is_bounded_least_recently_used_dropped(self) -> None:
        opener = Sealer(Keyring((KEY_A,)))
        first, second = sender(0), sender(1)
        for one in (first, second):
            opener.open(AAD, one.seal(AAD, b"x"))
        for number in range(2, OPEN_CACHE_SIZE + 1):
            opener.open(AAD, sender(number).seal(AAD, b"x"))
        self.assertEqual(len(opener._opening), OPEN_CACHE_SIZE)
        self.built.clear()
        opener.open(AAD, second.seal(AAD, b"x"))  # still cached: used later
        self.assertEqual(self.built, [])
        opener.open(AAD, first.seal(AAD, b"x"))  # dropped: built again
        self.assertEqual(self.built, [(KEY_A, first._prefix)])
        self.assertEqual(len(opener._opening), OPEN_CACHE_SIZE)

    def test_forged_prefixes_are_not_cached(self) -> None:
        opener = Sealer(Keyring((KEY_A,)))
        real = sender(1)
        opener.open(AAD, real.seal(AAD, b"x"))
        template = bytearray(real.seal(AAD, b"x"))
        for number in range(2000):
            forged = bytearray(template)
            forged[KEY_ID_SIZE : KEY_ID_SIZE + 16] = (number + 7).to_bytes(16, "big")
            with self.assertRaises(SealError) as caught:
                opener.open(AAD, bytes(forged))
            self.assertEqual(caught.exception.reason, "unauthenticated")
        self.assertEqual(list(opener._opening), [(KEY_A, real._prefix)])
        self.built.clear()
        self.assertEqual(opener.open(AAD, real.seal(AAD, b"ok"))[0], b"ok")
        self.assertEqual(self.built, [])

    def test_replacing_the_keyring_drops_the_ciphers_of_old_keys(self) -> None:
        opener = Sealer(Keyring((KEY_A,)))
        opener.open(AAD, sender(1).seal(AAD, b"x"))
        opener.keyring = Keyring((KEY_B,))
        self.assertEqual(len(opener._opening), 0)
        with self.assertRaises(SealError) as caught:
            opener.open(AAD, sender(1).seal(AAD, b"x"))
        self.assertEqual(caught.exception.reason, "unknown-key")


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


class KeyFileTests(unittest.TestCase):
    def write(self, text: str | bytes, mode: int = 0o600) -> str:
        path = os.path.abspath(self.mktemp())
        data = text.encode() if isinstance(text, str) else text
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def refused(self, path: str) -> str:
        with self.assertRaises(KeyFileError) as caught:
            read_key_file(path)
        message = str(caught.exception)
        self.assertIsInstance(caught.exception, ConfigurationError)
        self.assertNotIn("\n", message)
        self.assertIn(path, message)
        return message

    def test_reads_keys_in_order_with_comments_and_blank_lines(self) -> None:
        path = self.write(
            f"# the cluster keys\n\n  {b64(KEY_B)}  \n\t# old key, remove soon\n"
            f"{b64(KEY_A)}\r\n\n"
        )
        self.assertEqual(read_key_file(path).keys, (KEY_B, KEY_A))

    def test_reads_a_file_without_a_final_newline(self) -> None:
        self.assertEqual(read_key_file(self.write(b64(KEY_C))).keys, (KEY_C,))

    def test_a_generated_key_reads_back(self) -> None:
        key = generate_key()
        self.assertEqual(
            read_key_file(self.write(key + "\n")).keys, (base64.b64decode(key),)
        )

    def test_missing_file(self) -> None:
        path = os.path.abspath(self.mktemp())
        message = self.refused(path)
        self.assertIn("no such file", message)
        self.assertIn(f"pokan keygen > {path} && chmod 600 {path}", message)

    def test_not_a_regular_file(self) -> None:
        path = os.path.abspath(self.mktemp())
        os.mkdir(path, 0o700)
        self.assertIn("not a regular file", self.refused(path))

    def test_a_fifo_is_refused_without_blocking(self) -> None:
        path = os.path.abspath(self.mktemp())
        os.mkfifo(path, 0o600)
        self.assertIn("not a regular file", self.refused(path))

    def test_open_to_group_or_others(self) -> None:
        for mode in (0o644, 0o640, 0o604, 0o620, 0o602, 0o660, 0o666, 0o700 | 0o070):
            path = self.write(b64(KEY_A), mode)
            message = self.refused(path)
            self.assertIn(f"(mode {mode:04o})", message)
            self.assertIn(f"run chmod 600 {path}", message)
        self.assertIn(
            "readable by group or others (mode 0644): run chmod 600",
            self.refused(self.write(b64(KEY_A), 0o644)),
        )
        self.assertIn(
            "writable by group or others (mode 0620)",
            self.refused(self.write(b64(KEY_A), 0o620)),
        )
        self.assertIn(
            "usable by group or others (mode 0610)",
            self.refused(self.write(b64(KEY_A), 0o610)),
        )
        for mode in (0o600, 0o400):
            self.assertEqual(read_key_file(self.write(b64(KEY_A), mode)).keys, (KEY_A,))

    def test_unreadable(self) -> None:
        path = self.write(b64(KEY_A))
        with mock.patch.object(
            keyring.os, "open", side_effect=PermissionError(13, "x")
        ):
            message = self.refused(path)
        self.assertIn("cannot be read by this user", message)

    def test_unreadable_for_real(self) -> None:
        if os.geteuid() == 0:
            raise unittest.SkipTest("root reads every file")
        self.assertIn(
            "cannot be read by this user", self.refused(self.write(b64(KEY_A), 0o000))
        )

    def test_a_line_that_is_not_base64_is_named_by_number_not_text(self) -> None:
        secretish = "Zm9vYmFy!notbase64" + b64(KEY_B)[:20]
        for bad in (secretish, b64(KEY_B)[:-1], b64(KEY_B) + "A", "é" * 44):
            path = self.write(f"# keys\n{b64(KEY_A)}\n\n{bad}\n")
            message = self.refused(path)
            self.assertIn("line 4", message)
            self.assertNotIn(bad, message)
            self.assertNotIn(bad[:8], message)
            self.assertNotIn(b64(KEY_A)[:8], message)

    def test_a_line_of_the_wrong_size(self) -> None:
        for size in (0, 16, 31, 33, 64):
            line = b64(os.urandom(size)) if size else "===="
            path = self.write(f"{b64(KEY_A)}\n{line}\n")
            message = self.refused(path)
            self.assertIn("line 2", message)
            if size:
                self.assertNotIn(line, message)

    def test_the_same_key_twice_names_both_lines(self) -> None:
        path = self.write(f"{b64(KEY_A)}\n{b64(KEY_B)}\n# again\n{b64(KEY_A)}\n")
        message = self.refused(path)
        self.assertIn("lines 1 and 4", message)
        self.assertNotIn(b64(KEY_A), message)

    def test_no_key(self) -> None:
        for text in ("", "\n\n", "# only a comment\n   \n"):
            message = self.refused(self.write(text))
            self.assertIn("no key", message)
            self.assertIn("pokan keygen >>", message)

    def test_too_large(self) -> None:
        path = self.write(b"#" * (keyring.MAX_KEY_FILE_SIZE + 1))
        self.assertIn("over the", self.refused(path))

    def test_a_path_holding_a_newline_stays_one_line(self) -> None:
        path = os.path.abspath(self.mktemp()) + "\nforged log line"
        with self.assertRaises(KeyFileError) as caught:
            read_key_file(path)
        self.assertNotIn("\n", str(caught.exception))

    def test_the_file_is_opened_once_and_checked_through_its_descriptor(self) -> None:
        path = self.write(b64(KEY_A), 0o644)
        with mock.patch.object(keyring.os, "stat", side_effect=AssertionError):
            self.refused(path)
