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
