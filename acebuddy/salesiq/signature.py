"""SalesIQ webhook signatures: SHA256withRSA (PKCS#1 v1.5) over the raw request bytes, Base64 in the
`x-siqsignature` header (specs/salesiq-webhook.md §2). SalesIQ keeps up to two public keys during a
rotation, so a signature is good when either key verifies it.
"""
from __future__ import annotations

import base64
import binascii
import functools

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

HEADER = "x-siqsignature"

# A 16384-bit RSA signature is 2048 bytes (under 2800 in Base64); anything longer is not a signature.
_MAX_SIGNATURE_CHARS = 4096


@functools.lru_cache(maxsize=8)
def _public_keys(pems: tuple[str, ...]) -> tuple[rsa.RSAPublicKey, ...]:
    """Parse once per distinct key set; keys that are not RSA public keys are left out."""
    keys = []
    for pem in pems:
        try:
            key = serialization.load_pem_public_key(pem.encode("utf-8") if isinstance(pem, str) else pem)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        if isinstance(key, rsa.RSAPublicKey):
            keys.append(key)
    return tuple(keys)


@functools.lru_cache(maxsize=4)
def _private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode("utf-8"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("SalesIQ signs with RSA; this private key is not an RSA key")
    return key


def _decode(signature_b64: str) -> bytes | None:
    text = "".join(signature_b64.split())
    if not text or len(text) > _MAX_SIGNATURE_CHARS:
        return None
    # Java's Base64 encoders differ in alphabet; accept the standard one and the URL-safe one.
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def verify(raw_body: bytes, signature_b64: str | None, public_keys: list[str] | tuple[str, ...]) -> bool:
    """True when `signature_b64` is a valid SHA256withRSA signature of `raw_body` under one of the keys.

    Never raises: a missing, malformed or wrong-length signature, or unusable keys, give False.
    """
    if not signature_b64 or not isinstance(signature_b64, str) or not public_keys:
        return False
    if isinstance(raw_body, str):
        raw_body = raw_body.encode("utf-8")
    if not isinstance(raw_body, (bytes, bytearray, memoryview)):
        return False
    signature = _decode(signature_b64)
    if signature is None:
        return False
    try:
        keys = _public_keys(tuple(public_keys))
    except TypeError:  # unhashable entries: not PEM strings
        return False
    for key in keys:
        if len(signature) != (key.key_size + 7) // 8:
            continue
        try:
            key.verify(signature, bytes(raw_body), padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError, TypeError):
            continue
        return True
    return False


def sign(raw_body: bytes, private_key_pem: str) -> str:
    """The `x-siqsignature` value SalesIQ would send for `raw_body` (used by the simulator and tests)."""
    if isinstance(raw_body, str):
        raw_body = raw_body.encode("utf-8")
    signature = _private_key(private_key_pem).sign(bytes(raw_body), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def generate_key_pair(bits: int = 2048) -> tuple[str, str]:
    """A fresh (private PEM, public PEM) pair, as SalesIQ's "generate public key" would give; for the demo."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    return private_pem, public_pem
