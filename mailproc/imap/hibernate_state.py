"""What an IDLE session hands to imap-hibernate and gets back: the state, sans-IO.

A hibernated session is a client socket plus this record. It holds what a new imap process
needs to go on exactly where the old one stopped: who the user is (re-resolved through
auth-userdb, never believed from here), the selected mailbox and the client's view of it (the
seq -> UID list, the flags and modseqs it was told, its \\Recent set), the extensions it
ENABLEd, the IDLE tag and the counters for the logout line. The view is what lets the new
process tell the client exactly what changed while it slept (EXPUNGE / EXISTS / FETCH), the
way Dovecot's imap-state export does.

Encoding: one line of JSON (``v`` = version); number arrays are ``array`` bytes, zlib, base64,
so a 100,000-message view stays a few hundred KB at most. ``decode`` checks every field: the
record crosses a process boundary and a malformed one must be refused, not half-applied.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import zlib
from array import array
from dataclasses import dataclass, field
from typing import Any

VERSION = 1
MAX_STATE = 64 << 20
"""A record larger than this (decoded) is refused."""


class HibernateStateError(ValueError):
    """A state record that is not version 1 or is malformed."""


@dataclass
class MailboxView:
    """The selected mailbox as the client knows it."""

    name: str
    readonly: bool
    uidvalidity: int
    highestmodseq: int
    uids: array[int] = field(default_factory=lambda: array("I"))
    modseqs: array[int] = field(default_factory=lambda: array("Q"))
    flags: list[int] = field(default_factory=list)
    recent: list[int] = field(default_factory=list)
    reported_recent: int = 0
    keyword_count: int = 0
    local_keywords: list[str] = field(default_factory=list)


@dataclass
class HibernateState:
    """One hibernated session (see the module docstring)."""

    user: str
    session: str = ""
    remote_ip: str = ""
    local_ip: str = ""
    idle_tag: str = ""
    idle_started: float = 0.0
    """Wall-clock time IDLE began (``IDLE running for N secs`` in a disconnect line)."""
    enabled: list[str] = field(default_factory=list)
    condstore: bool = False
    stats: dict[str, int] = field(default_factory=dict)
    mailbox: MailboxView | None = None
    peer_uid: int = -1
    """The uid of the imap process that hibernated the session (SO_PEERCRED, filled in by
    imap-hibernate): the unhibernating process checks the user still maps to it."""
    added_out: int = 0
    """Octets imap-hibernate wrote to the client itself (``* OK Still here``)."""
    watches: list[int] = field(default_factory=list)
    """The imap process's inotify watch numbers on imap-hibernate's descriptor (the
    selected mailbox's directories); only on the way in."""


def _pack(a: array[int]) -> str:
    return base64.b64encode(zlib.compress(a.tobytes(), 6)).decode("ascii")


def _unpack(value: object, typecode: str, what: str) -> array[int]:
    if not isinstance(value, str):
        raise HibernateStateError(f"{what}: not a string")
    try:
        raw = zlib.decompressobj().decompress(base64.b64decode(value, validate=True), MAX_STATE)
    except (binascii.Error, zlib.error, ValueError) as e:
        raise HibernateStateError(f"{what}: {e}") from None
    out = array(typecode)
    if len(raw) % out.itemsize:
        raise HibernateStateError(f"{what}: truncated array")
    out.frombytes(raw)
    return out


def encode(state: HibernateState) -> bytes:
    """The record as one line (no LF inside, LF at the end)."""
    doc: dict[str, Any] = {
        "v": VERSION, "user": state.user, "session": state.session,
        "remote_ip": state.remote_ip, "local_ip": state.local_ip,
        "idle_tag": state.idle_tag, "idle_started": state.idle_started,
        "enabled": sorted(state.enabled), "condstore": state.condstore,
        "stats": state.stats, "peer_uid": state.peer_uid, "added_out": state.added_out,
    }
    if state.watches:
        doc["watches"] = state.watches
    box = state.mailbox
    if box is not None:
        flags_text = ",".join(map(str, box.flags)).encode("ascii")
        doc["mailbox"] = {
            "name": box.name, "readonly": box.readonly, "uidvalidity": box.uidvalidity,
            "highestmodseq": box.highestmodseq, "uids": _pack(box.uids),
            "modseqs": _pack(box.modseqs),
            "flags": base64.b64encode(zlib.compress(flags_text, 6)).decode("ascii"),
            "recent": _pack(array("I", box.recent)), "reported_recent": box.reported_recent,
            "keyword_count": box.keyword_count, "local_keywords": box.local_keywords,
        }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n"


def _get(doc: dict[str, Any], key: str, kind: type, what: str = "") -> Any:
    value = doc.get(key)
    if kind is int and isinstance(value, bool):
        raise HibernateStateError(f"{what}{key}: expected int")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind):
        raise HibernateStateError(f"{what}{key}: expected {kind.__name__}")
    return value


def _str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise HibernateStateError(f"{what}: expected a list of strings")
    return list(value)


def _decode_mailbox(doc: object) -> MailboxView:
    if not isinstance(doc, dict):
        raise HibernateStateError("mailbox: expected an object")
    w = "mailbox."
    uids = _unpack(doc.get("uids"), "I", "mailbox.uids")
    modseqs = _unpack(doc.get("modseqs"), "Q", "mailbox.modseqs")
    flags_raw = _unpack_text(doc.get("flags"), "mailbox.flags")
    try:
        flags = [int(x) for x in flags_raw.split(",")] if flags_raw else []
    except ValueError:
        raise HibernateStateError("mailbox.flags: not numbers") from None
    if not (len(uids) == len(modseqs) == len(flags)):
        raise HibernateStateError("mailbox: uids, modseqs and flags differ in length")
    if any(b <= a for a, b in itertools.pairwise(uids)):
        raise HibernateStateError("mailbox.uids: not ascending")
    if any(f < 0 for f in flags):
        raise HibernateStateError("mailbox.flags: negative")
    return MailboxView(
        name=_get(doc, "name", str, w), readonly=_get(doc, "readonly", bool, w),
        uidvalidity=_get(doc, "uidvalidity", int, w),
        highestmodseq=_get(doc, "highestmodseq", int, w), uids=uids, modseqs=modseqs,
        flags=flags, recent=list(_unpack(doc.get("recent"), "I", "mailbox.recent")),
        reported_recent=_get(doc, "reported_recent", int, w),
        keyword_count=_get(doc, "keyword_count", int, w),
        local_keywords=_str_list(doc.get("local_keywords"), "mailbox.local_keywords"))


def _unpack_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise HibernateStateError(f"{what}: not a string")
    try:
        raw = zlib.decompressobj().decompress(base64.b64decode(value, validate=True), MAX_STATE)
        return raw.decode("ascii")
    except (binascii.Error, zlib.error, ValueError) as e:
        raise HibernateStateError(f"{what}: {e}") from None


def decode(line: bytes) -> HibernateState:
    """Parse a record made by ``encode``; HibernateStateError for anything else."""
    if len(line) > MAX_STATE:
        raise HibernateStateError("state too large")
    try:
        doc = json.loads(line)
    except (ValueError, UnicodeDecodeError) as e:
        raise HibernateStateError(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise HibernateStateError("not a JSON object")
    if doc.get("v") != VERSION:
        raise HibernateStateError(f"unsupported state version {doc.get('v')!r}")
    stats = doc.get("stats")
    if not isinstance(stats, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
            for k, v in stats.items()):
        raise HibernateStateError("stats: expected an object of integers")
    box = doc.get("mailbox")
    watches = doc.get("watches", [])
    if not isinstance(watches, list) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in watches):
        raise HibernateStateError("watches: expected a list of positive integers")
    user = _get(doc, "user", str)
    if not user:
        raise HibernateStateError("user: empty")
    return HibernateState(
        user=user, session=_get(doc, "session", str), remote_ip=_get(doc, "remote_ip", str),
        local_ip=_get(doc, "local_ip", str), idle_tag=_get(doc, "idle_tag", str),
        idle_started=_get(doc, "idle_started", float),
        enabled=_str_list(doc.get("enabled"), "enabled"), condstore=_get(doc, "condstore", bool),
        stats=dict(stats), mailbox=None if box is None else _decode_mailbox(box),
        peer_uid=_get(doc, "peer_uid", int), added_out=_get(doc, "added_out", int),
        watches=list(watches))
