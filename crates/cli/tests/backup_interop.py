#!/usr/bin/env python3
"""An independent reader and writer of claudemesh's `.cmb` backups.

Checks the format in docs/security.md §11 against the real `claudemesh`
binary with other implementations of the primitives: argon2-cffi (the
reference Argon2 in C) for Argon2id and PyNaCl (libsodium) for
XChaCha20-Poly1305-IETF. It

1. starts a `claudemesh-broker` on a temporary SQLite database (loopback,
   a free port), makes a home with a mesh, a setting and the default
   policy, and has `claudemesh backup` write a backup;
2. parses the header, derives the key, decrypts with the header as the
   associated data, and checks the payload JSON against the home's files
   byte for byte (and that a wrong passphrase or an altered header byte
   does not open it);
3. writes a backup of its own (new salt and nonce, 64 MiB and 3 passes)
   and has `claudemesh restore` put it into a new home, which then talks
   to the broker.

Usage: backup_interop.py <claudemesh binary> <claudemesh-broker binary>
Needs: pip install pynacl argon2-cffi (scripts/test makes a venv).
"""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

try:
    from argon2.low_level import Type, hash_secret_raw
    from nacl import bindings
    from nacl.exceptions import CryptoError
except ImportError as e:  # pragma: no cover
    sys.exit(f"error: {e}: run `pip install pynacl argon2-cffi` (scripts/test does it in a venv)")

PASS = "an independent implementation"
HEADER = struct.Struct(">4sBBIIB16s24s")  # 55 bytes
assert HEADER.size == 55

checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


def env_for(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDEMESH_")}
    env["CLAUDEMESH_HOME"] = home
    env["USER"] = "interop"
    return env


def cm(binary, home, *args, passphrase=None, ok=True):
    env = env_for(home)
    if passphrase is not None:
        env["CLAUDEMESH_PASSPHRASE"] = passphrase
    r = subprocess.run(
        [binary, *args], env=env, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120,
    )
    if ok and r.returncode != 0:
        raise AssertionError(f"claudemesh {' '.join(args)} exited {r.returncode}:\n{r.stderr}")
    return r


def start_broker(binary, tmp):
    db = os.path.join(tmp, "broker.db")
    p = subprocess.Popen(
        [binary, "--listen", "127.0.0.1:0", "--database-url", f"sqlite://{db}"],
        env={k: v for k, v in os.environ.items() if not k.startswith("CLAUDEMESH_")},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 30
    seen = []
    while time.time() < deadline:
        line = p.stderr.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"listening on (ws://\S+)", line)
        if m:
            # Keep reading its log so a full pipe never blocks it.
            threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
            return p, m.group(1)
    p.kill()
    raise AssertionError("the broker did not start:\n" + "".join(seen))


def parse_header(data):
    check(len(data) >= HEADER.size + 16, "longer than a header and a tag")
    magic, version, kdf, m_cost, t_cost, lanes, salt, nonce = HEADER.unpack_from(data)
    check(magic == b"CMBK", "magic CMBK")
    check(version == 1, "format version 1")
    check(kdf == 1, "KDF 1 = Argon2id v1.3")
    check(lanes == 1, "one lane")
    check(m_cost >= 64 * 1024, f"at least 64 MiB (got {m_cost} KiB)")
    check(t_cost >= 3, f"at least 3 passes (got {t_cost})")
    return m_cost, t_cost, salt, nonce


def derive(passphrase, salt, m_cost, t_cost):
    return hash_secret_raw(
        passphrase.encode("utf-8"), salt, time_cost=t_cost, memory_cost=m_cost,
        parallelism=1, hash_len=32, type=Type.ID, version=19,
    )


def open_backup(data, passphrase):
    m_cost, t_cost, salt, nonce = parse_header(data)
    key = derive(passphrase, salt, m_cost, t_cost)
    header = data[: HEADER.size]
    return bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(data[HEADER.size :], header, nonce, key)


def seal_backup(payload, passphrase, m_cost=64 * 1024, t_cost=3):
    salt, nonce = os.urandom(16), os.urandom(24)
    header = HEADER.pack(b"CMBK", 1, 1, m_cost, t_cost, 1, salt, nonce)
    key = derive(passphrase, salt, m_cost, t_cost)
    return header + bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(payload, header, nonce, key)


def file_bytes(entry):
    if entry["encoding"] == "utf8":
        return entry["content"].encode("utf-8")
    check(entry["encoding"] == "hex", f"known encoding for {entry['path']}")
    return bytes.fromhex(entry["content"])


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    claudemesh, broker_bin = (os.path.abspath(a) for a in sys.argv[1:])
    tmp = tempfile.mkdtemp(prefix="cm-interop-")
    broker = None
    try:
        broker, url = start_broker(broker_bin, tmp)
        home = os.path.join(tmp, "alice")
        cm(claudemesh, home, "mesh", "create", "team", "--broker", url, "--name", "alice")
        cm(claudemesh, home, "profile", "summary", "kept in the backup")
        config = json.load(open(os.path.join(home, "config.json")))
        mesh_id = config["meshes"][0]["id"]

        # 1. The real CLI writes a backup.
        out = os.path.join(tmp, "alice.cmb")
        cm(claudemesh, home, "backup", out, passphrase=PASS)
        data = open(out, "rb").read()

        # 2. Read it independently.
        plain = open_backup(data, PASS)
        payload = json.loads(plain)
        check(payload["format"] == "claudemesh-backup/1", "payload format")
        check(isinstance(payload["created_at"], int) and payload["created_at"] > 1.7e9, "created_at")
        check(isinstance(payload["client_version"], str), "client_version")
        paths = [f["path"] for f in payload["files"]]
        check(paths == sorted(paths), "files sorted by path")
        mesh_dir = f"meshes/{mesh_id[:16]}"
        for want in ("config.json", "policy.yaml", f"{mesh_dir}/keys.json"):
            check(want in paths, f"{want} in the backup")
        check(not any("state.db" in p or p.endswith(".lock") for p in paths), "no state.db, no locks")
        for f in payload["files"]:
            on_disk = open(os.path.join(home, *f["path"].split("/")), "rb").read()
            check(file_bytes(f) == on_disk, f"{f['path']} is the home's file byte for byte")
        files = {f["path"]: f for f in payload["files"]}
        cfg = json.loads(file_bytes(files["config.json"]))
        check(cfg["meshes"][0]["name"] == "team", "the mesh's name")
        check(cfg["meshes"][0]["summary"] == "kept in the backup", "the mesh's settings")
        keys = json.loads(file_bytes(files[f"{mesh_dir}/keys.json"]))
        check(len(keys["member"]) == 128, "the member key (seed and public key, hex)")
        check(keys["member"].encode() not in data, "the member key is not in the file in the clear")

        try:
            open_backup(data, PASS + "!")
            check(False, "a wrong passphrase must not open it")
        except CryptoError:
            check(True, "wrong passphrase refused")
        tampered = bytearray(data)
        tampered[20] ^= 1  # a salt byte: the header is associated data
        try:
            open_backup(bytes(tampered), PASS)
            check(False, "an altered header must not open")
        except CryptoError:
            check(True, "altered header refused")

        # 3. A backup written here restores with the real CLI.
        payload["created_at"] = int(time.time())
        ours = os.path.join(tmp, "python.cmb")
        with open(ours, "wb") as fh:
            fh.write(seal_backup(json.dumps(payload).encode("utf-8"), PASS))
        home2 = os.path.join(tmp, "alice-again")
        r = cm(claudemesh, home2, "--json", "-y", "restore", ours, passphrase=PASS)
        restored = json.loads(r.stdout)
        check(restored["meshes"] == [{"id": mesh_id, "name": "team"}], "restored meshes")
        r = cm(claudemesh, home2, "--json", "-y", "restore", ours, passphrase="not " + PASS, ok=False)
        check(r.returncode == 11, f"wrong passphrase is exit 11 (got {r.returncode})")
        peers = json.loads(cm(claudemesh, home2, "--json", "peer", "list").stdout)
        check([p["name"] for p in peers] == ["alice"], "the restored home talks to the broker")
        print(f"backup interop: ok ({checks} checks; read {len(paths)} files, restored {restored['files']})")
    finally:
        if broker is not None:
            broker.terminate()
            try:
                broker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                broker.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        sys.exit(f"error: backup interop check failed: {e}")
