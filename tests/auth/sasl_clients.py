"""Tiny client sides of the SASL mechanisms, for driving Dovecot and cote the same way.

Each returns (initial_response or None, step) where step maps a server challenge to the next
client response. They are written from the RFCs, independently of cote's server code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable

Step = Callable[[bytes], bytes]


def plain(user: str, password: str, authzid: str = "") -> tuple[bytes | None, Step | None]:
    return f"{authzid}\0{user}\0{password}".encode(), None


def login(user: str, password: str) -> tuple[bytes | None, Step]:
    def step(challenge: bytes) -> bytes:
        return user.encode() if challenge.startswith(b"Username") else password.encode()

    return None, step


def cram_md5(user: str, password: str) -> tuple[bytes | None, Step]:
    def step(challenge: bytes) -> bytes:
        digest = hmac.new(password.encode(), challenge, "md5").hexdigest()
        return f"{user} {digest}".encode()

    return None, step


def _digest_fields(challenge: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in re.finditer(rb'([a-zA-Z-]+)=(?:"((?:[^"\\]|\\.)*)"|([^,]*))', challenge):
        out[m.group(1).decode().lower()] = (m.group(2) if m.group(2) is not None
                                            else m.group(3)).decode()
    return out


def digest_md5(user: str, password: str, *, realm: str | None = None, authzid: str = "",
               service: str = "imap", host: str = "localhost",
               cnonce: str | None = None) -> tuple[bytes | None, Step]:
    """RFC 2831 client, qop=auth; the step after rspauth answers with an empty response."""
    state: dict[str, str] = {}

    def h(data: bytes) -> bytes:
        return hashlib.md5(data).digest()

    def step(challenge: bytes) -> bytes:
        fields = _digest_fields(challenge)
        if "rspauth" in fields:
            state["rspauth"] = fields["rspauth"]
            return b""
        use_realm = realm if realm is not None else fields.get("realm", "")
        nonce = fields["nonce"]
        cn = cnonce or base64.b64encode(os.urandom(12)).decode()
        uri = f"{service}/{host}"
        a1 = h(f"{user}:{use_realm}:{password}".encode()) + f":{nonce}:{cn}".encode()
        if authzid:
            a1 += f":{authzid}".encode()
        ha1 = hashlib.md5(a1).hexdigest()
        ha2 = hashlib.md5(f"AUTHENTICATE:{uri}".encode()).hexdigest()
        response = hashlib.md5(f"{ha1}:{nonce}:00000001:{cn}:auth:{ha2}".encode()).hexdigest()
        state["expected_rspauth"] = hashlib.md5(
            f"{ha1}:{nonce}:00000001:{cn}:auth:"
            f"{hashlib.md5(f':{uri}'.encode()).hexdigest()}".encode()).hexdigest()
        parts = [f'username="{user}"', f'realm="{use_realm}"', f'nonce="{nonce}"',
                 f'cnonce="{cn}"', "nc=00000001", "qop=auth", f'digest-uri="{uri}"',
                 f"response={response}", "charset=utf-8"]
        if authzid:
            parts.append(f'authzid="{authzid}"')
        return ",".join(parts).encode()

    step.state = state  # type: ignore[attr-defined]
    return None, step


def _scram_name(name: str) -> str:
    return name.replace("=", "=3D").replace(",", "=2C")


def scram(hash_name: str, user: str, password: str, *, authzid: str = "",
          gs2_flag: str = "n", nonce: str | None = None,
          tamper_proof: bool = False) -> tuple[bytes, Step]:
    """RFC 5802 client. After the server-final it checks the server signature."""
    cnonce = nonce or base64.b64encode(os.urandom(18)).decode()
    gs2 = f"{gs2_flag},{'a=' + _scram_name(authzid) if authzid else ''},"
    first_bare = f"n={_scram_name(user)},r={cnonce}"
    state: dict[str, object] = {}

    def step(challenge: bytes) -> bytes:
        text = challenge.decode()
        if text.startswith("v="):
            state["server_ok"] = text == "v=" + base64.b64encode(state["server_sig"]).decode()  # type: ignore[arg-type]
            return b""
        attrs = dict(item.split("=", 1) for item in text.split(","))
        salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), base64.b64decode(attrs["s"]),
                                     int(attrs["i"]))
        client_key = hmac.digest(salted, b"Client Key", hash_name)
        stored_key = hashlib.new(hash_name, client_key).digest()
        final_wo_proof = f"c={base64.b64encode(gs2.encode()).decode()},r={attrs['r']}"
        auth_message = f"{first_bare},{text},{final_wo_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, hash_name)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        if tamper_proof:
            proof = bytes([proof[0] ^ 1]) + proof[1:]
        server_key = hmac.digest(salted, b"Server Key", hash_name)
        state["server_sig"] = hmac.digest(server_key, auth_message, hash_name)
        return f"{final_wo_proof},p={base64.b64encode(proof).decode()}".encode()

    step.state = state  # type: ignore[attr-defined]
    return (gs2 + first_bare).encode(), step


def apop(challenge: str, user: str, password: str) -> bytes:
    """What pop3-login sends as the APOP initial response: challenge NUL user NUL md5."""
    digest = hashlib.md5(challenge.encode() + password.encode()).digest()
    return challenge.encode() + b"\0" + user.encode() + b"\0" + digest


def xoauth2(user: str, token: str) -> tuple[bytes, Step]:
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode(), lambda _c: b""


def oauthbearer(user: str, token: str, *, host: str = "localhost",
                port: int = 143) -> tuple[bytes, Step]:
    gs2 = f"n,a={_scram_name(user)},"
    msg = f"{gs2}\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    return msg.encode(), lambda _c: b"\x01"
