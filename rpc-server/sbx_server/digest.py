"""SHA-256 and the constant-time comparison of digests, without importing hashlib or hmac: both load
OpenSSL's libcrypto first (hashlib's _hashlib), some 5 ms of the server's start for digests of a token
and of file names. Python's own SHA-256 module (3.8-3.11: _sha256, 3.12+: _sha2) gives the same
digests; hmac.compare_digest falls back to _operator's when OpenSSL is missing, and so do we."""

import sys


def _sha256():
    for name in ("_sha2", "_sha256") if sys.version_info >= (3, 12) else ("_sha256", "_sha2"):
        try:
            return __import__(name).sha256
        except (ImportError, AttributeError):
            pass
    import hashlib  # a Python built without its own SHA-256 (--with-builtin-hashlib-hashes)

    return hashlib.sha256


sha256 = _sha256()

try:
    from _operator import _compare_digest as compare_digest
except ImportError:
    from hmac import compare_digest


_BLOCK = 64  # SHA-256's block size, in bytes


def hmac_sha256(key, message):
    """HMAC-SHA256 (RFC 2104) over our SHA-256, for the same reason as above: the `hmac` module imports
    hashlib. Host mode derives each sandbox's token with it (host.py)."""
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = sha256(bytes(b ^ 0x36 for b in key) + message).digest()
    return sha256(bytes(b ^ 0x5C for b in key) + inner)
