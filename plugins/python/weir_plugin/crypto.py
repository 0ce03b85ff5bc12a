"""HMAC-SHA256, hex and base64 helpers, as strict as the Rust SDK's (`plugins/sdk/src/crypto.rs`).

Pure standard library (`hmac`, `hashlib`, `base64`), so it runs the same in plain CPython and inside a
componentize-py component (whose CPython has `hashlib.sha256` built in; no OpenSSL is needed).

Compare secret-derived values with `verify_hmac_sha256` or `constant_time_eq` (both `hmac.compare_digest`),
never with `==`.
"""

import base64 as _base64
import hmac as _hmac
import re as _re

__all__ = [
    "TAG_LEN",
    "hmac_sha256",
    "verify_hmac_sha256",
    "constant_time_eq",
    "hex_decode",
    "hex_encode",
    "base64_decode",
    "base64_encode",
]

#: Size of an HMAC-SHA256 tag in bytes.
TAG_LEN = 32

_HEX = _re.compile(r"[0-9a-fA-F]*")
# Standard alphabet, then at most two '=' (the padding is checked below).
_BASE64 = _re.compile(r"[A-Za-z0-9+/]*(={0,2})")


def hmac_sha256(key, message):
    """HMAC-SHA256 of `message` (bytes) under `key` (bytes of any length)."""
    # By name: CPython's built-in HMAC (HACL*), one call. A constructor (hashlib.sha256) would take the
    # pure-Python path, which imports `warnings` lazily, at the first call.
    return _hmac.digest(key, message, "sha256")


def verify_hmac_sha256(key, message, tag):
    """Whether `tag` is the HMAC-SHA256 of `message` under `key`, compared in constant time.
    A tag of the wrong length is simply not equal."""
    return _hmac.compare_digest(hmac_sha256(key, message), tag)


def constant_time_eq(a, b):
    """Constant-time equality of two byte strings (the length itself is not secret)."""
    return _hmac.compare_digest(a, b)


def hex_decode(text, length=None):
    """Decode hexadecimal (either case, no separators, even length); `None` on any other input, or when
    `length` is given and the result is not that many bytes."""
    if len(text) % 2 or (length is not None and len(text) != 2 * length) or not _HEX.fullmatch(text):
        return None
    return bytes.fromhex(text)


def hex_encode(data):
    """Lower-case hexadecimal of `data`."""
    return data.hex()


def base64_encode(data):
    """Standard base64 (RFC 4648 `+/` alphabet) of `data`, padded."""
    return _base64.b64encode(data).decode("ascii")


def base64_decode(text, length=None):
    """Decode standard base64, padded or not (providers differ); `None` on any other deviation, wrong padding
    and non-canonical trailing bits included, or when `length` is given and the result is not that many
    bytes (the same rule as the Rust SDK's `base64` engine)."""
    if length is not None and len(text) > -(-length // 3) * 4:
        return None  # too long to be `length` bytes: not worth decoding
    m = _BASE64.fullmatch(text)
    if m is None:
        return None
    padding = len(m.group(1))
    unpadded = text[: len(text) - padding]
    if len(unpadded) % 4 == 1 or (padding and (len(unpadded) + padding) % 4):
        return None
    data = _base64.b64decode(unpadded + "=" * (-len(unpadded) % 4))
    # Python ignores bits left over in the last character; the canonical encoding has them zero.
    if base64_encode(data).rstrip("=") != unpadded:
        return None
    if length is not None and len(data) != length:
        return None
    return data


# A component has no filesystem at run time: only the modules imported while componentize-py pre-initialises
# the app (at build time) exist then, and a lazy import inside a library fails at the first trigger
# ("No module named 'warnings'"). Exercising every path once here, at import, loads whatever they import.
assert hmac_sha256(b"key", b"message") == bytes.fromhex("6e9ef29b75fffc5b7abae527d58fdadb2fe42e7219011976917343065f58ed4a")
assert verify_hmac_sha256(b"key", b"message", hmac_sha256(b"key", b"message"))
assert base64_decode(base64_encode(b"\x00\xff")) == b"\x00\xff" and hex_decode("00ff", 2) == b"\x00\xff"
