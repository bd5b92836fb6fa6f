"""SalesIQ webhook signatures: SHA256withRSA over the raw bytes, Base64, either of two keys."""
import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from acebuddy.salesiq import signature


def _pem_pair(bits=2048):
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return key, private, public


@pytest.fixture(scope="module")
def pair_a():
    return _pem_pair()


@pytest.fixture(scope="module")
def pair_b():
    return _pem_pair()


BODY = json.dumps(
    {"handler": "message", "operation": "chat", "message": {"text": "My server is slow — café"},
     "visitor": {"active_conversation_id": "346500001234567"}, "request": {"id": "r-1"}, "attachments": []},
    ensure_ascii=False,
).encode("utf-8")


def test_valid_signature_verifies(pair_a):
    key, _, public = pair_a
    # Signed independently of signature.sign, as SalesIQ's Java signer would.
    header = base64.b64encode(key.sign(BODY, padding.PKCS1v15(), hashes.SHA256())).decode()
    assert signature.verify(BODY, header, [public]) is True


def test_sign_produces_what_verify_accepts(pair_a):
    _, private, public = pair_a
    header = signature.sign(BODY, private)
    assert signature.verify(BODY, header, [public])
    # and the value is standard Base64 of a 256-byte RSA-2048 signature
    assert len(base64.b64decode(header, validate=True)) == 256


def test_tampered_body_fails(pair_a):
    _, private, public = pair_a
    header = signature.sign(BODY, private)
    assert not signature.verify(BODY.replace(b"slow", b"fast"), header, [public])
    assert not signature.verify(BODY + b" ", header, [public])  # even whitespace: raw bytes count


def test_signature_from_another_key_fails(pair_a, pair_b):
    _, private_a, _ = pair_a
    _, _, public_b = pair_b
    assert not signature.verify(BODY, signature.sign(BODY, private_a), [public_b])


def test_either_of_two_keys_passes_during_rotation(pair_a, pair_b):
    _, private_a, public_a = pair_a
    _, private_b, public_b = pair_b
    keys = [public_a, public_b]
    assert signature.verify(BODY, signature.sign(BODY, private_a), keys)
    assert signature.verify(BODY, signature.sign(BODY, private_b), keys)
    _, private_c, _ = _pem_pair()
    assert not signature.verify(BODY, signature.sign(BODY, private_c), keys)


def test_a_broken_first_key_does_not_hide_a_good_second(pair_a):
    _, private, public = pair_a
    garbage_key = "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----"
    assert signature.verify(BODY, signature.sign(BODY, private), [garbage_key, public])


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "not base64 at all!!", "QUJD", "A" * 5000, "=====", "\x00\xff", "aGVsbG8=\n" * 3],
)
def test_garbage_headers_are_false_not_errors(pair_a, header):
    _, _, public = pair_a
    assert signature.verify(BODY, header, [public]) is False


def test_wrong_length_signature_is_false(pair_a):
    key, _, public = pair_a
    real = key.sign(BODY, padding.PKCS1v15(), hashes.SHA256())
    assert not signature.verify(BODY, base64.b64encode(real[:-1]).decode(), [public])
    assert not signature.verify(BODY, base64.b64encode(real + b"\x00").decode(), [public])


def test_unusable_keys_give_false(pair_a):
    _, private, _ = pair_a
    header = signature.sign(BODY, private)
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    assert signature.verify(BODY, header, []) is False
    assert signature.verify(BODY, header, [ec_public]) is False
    assert signature.verify(BODY, header, ["garbage"]) is False
    assert signature.verify(BODY, header, [private]) is False  # a private key is not a public key
    assert signature.verify(BODY, header, [None]) is False


def test_signature_with_line_breaks_is_accepted(pair_a):
    _, private, public = pair_a
    header = signature.sign(BODY, private)
    wrapped = "\r\n".join(header[i:i + 76] for i in range(0, len(header), 76))
    assert signature.verify(BODY, wrapped, [public])


def test_keys_are_parsed_once(pair_a, monkeypatch):
    _, private, public = pair_a
    header = signature.sign(BODY, private)
    signature._public_keys.cache_clear()
    calls = []
    real = serialization.load_pem_public_key
    monkeypatch.setattr(signature.serialization, "load_pem_public_key", lambda data: calls.append(1) or real(data))
    for _ in range(5):
        assert signature.verify(BODY, header, [public])
    assert len(calls) == 1


def test_generated_key_pair_round_trips():
    private, public = signature.generate_key_pair()
    assert public.startswith("-----BEGIN PUBLIC KEY-----")
    assert signature.verify(b"{}", signature.sign(b"{}", private), [public])
