#!/usr/bin/env python3
"""Generate libsodium test vectors for claudemesh-crypto.

Every expected value below is computed by libsodium itself (the copy bundled
in PyNaCl, pinned in requirements.txt), never by claudemesh code. Inputs are
derived deterministically from a counter, so rerunning rewrites identical
JSON (except crypto_box_seal, whose ephemeral key is random by design:
those cases are opened, not compared).

Regenerate:
    python3 -m venv .venv
    .venv/bin/pip install -r crates/crypto/tests/vectors/requirements.txt
    .venv/bin/python crates/crypto/tests/vectors/generate.py
"""
import hashlib
import json
import os

import nacl
import nacl.bindings as b

HERE = os.path.dirname(os.path.abspath(__file__))
_counter = 0


def det(n):
    """n deterministic pseudo-random bytes (SHA-256 in counter mode)."""
    global _counter
    out = b""
    while len(out) < n:
        _counter += 1
        out += hashlib.sha256(b"claudemesh-vectors" + _counter.to_bytes(8, "big")).digest()
    return out[:n]


LENGTHS = [0, 1, 31, 255, 256, 1000, 4096, 16384]


def ed_keys():
    seed = det(32)
    pk, sk = b.crypto_sign_seed_keypair(seed)
    return seed, pk, sk


def main():
    v = {
        "generator": "crates/crypto/tests/vectors/generate.py",
        "pynacl": nacl.__version__,
        "libsodium": "1.0.18 (bundled with PyNaCl 1.5.0)",
        "regenerate": "python3 -m venv .venv && .venv/bin/pip install -r crates/crypto/tests/vectors/requirements.txt && .venv/bin/python crates/crypto/tests/vectors/generate.py",
    }

    v["sign_seed_keypair"] = []
    v["ed25519_to_curve25519"] = []
    for _ in range(8):
        seed, pk, sk = ed_keys()
        v["sign_seed_keypair"].append({"seed": seed.hex(), "pk": pk.hex(), "sk": sk.hex()})
        v["ed25519_to_curve25519"].append({
            "ed_pk": pk.hex(), "ed_sk": sk.hex(),
            "x_pk": b.crypto_sign_ed25519_pk_to_curve25519(pk).hex(),
            "x_sk": b.crypto_sign_ed25519_sk_to_curve25519(sk).hex(),
        })

    v["sign_detached"] = []
    for n in LENGTHS:
        seed, pk, sk = ed_keys()
        msg = det(n)
        sig = b.crypto_sign(msg, sk)[:64]  # crypto_sign = sig ‖ msg
        v["sign_detached"].append({"seed": seed.hex(), "pk": pk.hex(), "msg": msg.hex(), "sig": sig.hex()})

    v["crypto_box_easy"] = []
    for n in LENGTHS:
        s_seed, s_pk, s_sk = ed_keys()
        r_seed, r_pk, r_sk = ed_keys()
        sx = b.crypto_sign_ed25519_sk_to_curve25519(s_sk)
        rx = b.crypto_sign_ed25519_pk_to_curve25519(r_pk)
        nonce = det(24)
        msg = det(n)
        ct = b.crypto_box(msg, nonce, rx, sx)  # easy layout: tag ‖ ct
        v["crypto_box_easy"].append({
            "sender_seed": s_seed.hex(), "recipient_seed": r_seed.hex(),
            "nonce": nonce.hex(), "msg": msg.hex(), "ct": ct.hex(),
            "beforenm": b.crypto_box_beforenm(rx, sx).hex(),
        })

    v["crypto_box_seal"] = []
    for n in LENGTHS:
        r_seed, r_pk, r_sk = ed_keys()
        msg = det(n)
        ct = b.crypto_box_seal(msg, b.crypto_sign_ed25519_pk_to_curve25519(r_pk))
        v["crypto_box_seal"].append({"recipient_seed": r_seed.hex(), "msg": msg.hex(), "ct": ct.hex()})

    v["crypto_secretbox_easy"] = []
    for n in LENGTHS:
        key, nonce, msg = det(32), det(24), det(n)
        v["crypto_secretbox_easy"].append({
            "key": key.hex(), "nonce": nonce.hex(), "msg": msg.hex(),
            "ct": b.crypto_secretbox(msg, nonce, key).hex(),
        })

    v["crypto_pwhash_argon2id"] = []
    for ops, mem in [(1, 8 << 20), (2, 8 << 20), (3, 8 << 20), (3, 64 << 20), (3, 256 << 20)]:
        pw, salt = det(20), det(16)
        out = b.crypto_pwhash_alg(32, pw, salt, ops, mem, b.crypto_pwhash_ALG_ARGON2ID13)
        v["crypto_pwhash_argon2id"].append({
            "password": pw.hex(), "salt": salt.hex(), "opslimit": ops, "memlimit": mem, "out": out.hex(),
        })

    v["xchacha20poly1305_ietf"] = []
    for n, aad_len in [(0, 0), (1, 0), (0, 55), (17, 55), (256, 55), (4096, 13)]:
        key, nonce, msg, aad = det(32), det(24), det(n), det(aad_len)
        ct = b.crypto_aead_xchacha20poly1305_ietf_encrypt(msg, aad, nonce, key)
        v["xchacha20poly1305_ietf"].append({
            "key": key.hex(), "nonce": nonce.hex(), "msg": msg.hex(), "aad": aad.hex(), "ct": ct.hex(),
        })

    # HKDF-SHA256 is not in libsodium 1.0.18; RFC 5869 Appendix A, test cases 1-3.
    v["hkdf_sha256_rfc5869"] = [
        {"ikm": "0b" * 22, "salt": "000102030405060708090a0b0c", "info": "f0f1f2f3f4f5f6f7f8f9", "l": 42,
         "okm": "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"},
        {"ikm": bytes(range(0x00, 0x50)).hex(), "salt": bytes(range(0x60, 0xb0)).hex(),
         "info": bytes(range(0xb0, 0x100)).hex(), "l": 82,
         "okm": "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87"},
        {"ikm": "0b" * 22, "salt": "", "info": "", "l": 42,
         "okm": "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"},
    ]

    path = os.path.join(HERE, "libsodium.json")
    with open(path, "w") as f:
        json.dump(v, f, indent=1, sort_keys=True)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
