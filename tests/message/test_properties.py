"""Property tests: generated MIME trees scan back to the same tree; arbitrary or mutated
bytes never make the scanner or any producer raise, and its offsets stay consistent."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cote.storage.message.address import parse_addresses, parse_addresses_full
from cote.storage.message.fuzz import InvariantError, check_invariants, fuzz_message
from cote.storage.message.scanner import LEAF, MESSAGE, MULTIPART, dumps, loads, scan
from tests.message.corpusgen import corpus


@dataclass
class Node:
    kind: int
    ctype: bytes = b"text"
    subtype: bytes = b"plain"
    body: bytes = b""
    children: list[Node] = field(default_factory=list)


_line = st.text(alphabet="abcdefghij XYZ=:;.,", min_size=0, max_size=30).map(
    lambda s: s.encode())
_body = st.lists(_line, min_size=0, max_size=5)


def _leaf() -> st.SearchStrategy[Node]:
    return st.builds(
        lambda t, lines: Node(LEAF, t[0], t[1], b"\n".join(lines)),
        st.sampled_from([(b"text", b"plain"), (b"text", b"html"), (b"image", b"png"),
                         (b"application", b"x-thing")]),
        _body)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    multipart = st.builds(
        lambda sub, kids: Node(MULTIPART, b"multipart", sub, children=kids),
        st.sampled_from([b"mixed", b"alternative", b"related"]),
        st.lists(children, min_size=1, max_size=4))
    message = st.builds(lambda kid: Node(MESSAGE, b"message", b"rfc822", children=[kid]),
                        children)
    return multipart | message


trees = st.recursive(_leaf(), _extend, max_leaves=12)


class _Writer:
    def __init__(self, eol: bytes) -> None:
        self.eol = eol
        self.n = 0

    def entity(self, node: Node, top: bool) -> bytes:
        eol = self.eol
        hdr = b"From: gen@example.com" + eol + b"MIME-Version: 1.0" + eol if top else b""
        if node.kind == MULTIPART:
            self.n += 1
            boundary = b"=_b%d_" % self.n
            hdr += (b"Content-Type: multipart/" + node.subtype + b"; boundary=\"" + boundary
                    + b"\"" + eol)
            parts = [eol + b"--" + boundary + eol + self.entity(c, False)
                     for c in node.children]
            return hdr + eol + b"preamble" + b"".join(parts) + eol + b"--" + boundary + b"--" + eol
        hdr += b"Content-Type: " + node.ctype + b"/" + node.subtype + eol
        if node.kind == MESSAGE:
            return hdr + eol + self.entity(node.children[0], True)
        return hdr + eol + node.body.replace(b"\n", eol)


def _flatten(node: Node, out: list[Node]) -> None:
    out.append(node)
    for c in node.children:
        _flatten(c, out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees, st.sampled_from([b"\r\n", b"\n"]))
def test_generated_tree_scans_back(tree: Node, eol: bytes) -> None:
    data = _Writer(eol).entity(tree, True)
    parts = scan(data)
    nodes: list[Node] = []
    _flatten(tree, nodes)
    assert len(parts) == len(nodes)
    for p, n in zip(parts, nodes, strict=True):
        assert p.kind == n.kind
        assert (p.ctype, p.subtype) == (n.ctype, n.subtype)
        if n.kind == LEAF:
            assert data[p.body_start:p.body_end] == n.body.replace(b"\n", eol)
            assert p.body_lines == n.body.count(b"\n")
            assert p.body_vsize == len(n.body.replace(b"\n", b"\r\n"))
    # children are attached to the right parents
    for i, p in enumerate(parts):
        if p.parent >= 0:
            assert parts[p.parent].kind in (MULTIPART, MESSAGE)
            assert parts[p.parent].body_start <= p.hdr_start <= p.body_end <= parts[i].body_end
    assert loads(dumps(parts)) == parts


def _exercise(data: bytes) -> None:
    fuzz_message(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    _exercise(data)


_TOKENS = [b"\r\n", b"\n", b"\r", b"--", b"--b", b"--b--", b":", b" ", b"\t", b";", b"=",
           b"\"", b"(", b")", b"<", b">", b"@", b",", b"\x00", b"\xff", b"Content-Type: ",
           b"multipart/mixed; boundary=b", b"message/rfc822", b"base64", b"=?utf-8?q?x?=",
           b"Content-Transfer-Encoding: quoted-printable", b"\r\n\r\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS) | st.binary(max_size=5), max_size=80))
def test_mime_shaped_noise_never_raises(chunks: list[bytes]) -> None:
    _exercise(b"".join(chunks))


def test_bounded_fuzz_of_mutated_corpus() -> None:
    """A few seconds of random mutations (flip, insert, delete, splice) of corpus messages."""
    rng = random.Random(20261122)
    seeds = [d for n, d in corpus() if len(d) < 200_000]
    deadline = time.monotonic() + 4.0
    runs = 0
    while time.monotonic() < deadline:
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 8)):
            op = rng.randrange(4)
            pos = rng.randrange(len(data) + 1)
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = rng.randrange(256)
            elif op == 1:
                data[pos:pos] = rng.choice(_TOKENS)
            elif op == 2:
                del data[pos:pos + rng.randrange(1, 40)]
            else:
                other = rng.choice(seeds)
                a = rng.randrange(len(other))
                data[pos:pos] = other[a:a + rng.randrange(1, 200)]
        _exercise(bytes(data))
        runs += 1
    assert runs > 50


def test_invariant_checker_catches_a_broken_scan() -> None:
    data = b"Subject: x\n\nbody\n"
    parts = scan(data)
    check_invariants(data, parts)
    broken = (parts[0]._replace(body_lines=7),)
    try:
        check_invariants(data, broken)
    except InvariantError:
        return
    raise AssertionError("a wrong line count went unnoticed")


_addr_atom = st.text(alphabet="abcXYZ09.-_+=é", min_size=1, max_size=6).map(
    lambda s: s.encode())
_addr_space = st.sampled_from([b"", b" ", b"  ", b"\t"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_addr_atom, _addr_space, st.sampled_from(
    [b"@", b"<", b">", b"\"", b"(", b")", b",", b".", b"@x.y", b"a@b.c", b"<a@b.c>"])),
    max_size=10))
def test_address_fast_paths_equal_the_full_parser(pieces: list[bytes]) -> None:
    value = b"".join(pieces)
    assert parse_addresses(value) == parse_addresses_full(value)


def test_address_fast_paths_are_taken() -> None:
    assert parse_addresses(b"Joe  Q <j.q@x.org>") == parse_addresses_full(b"Joe  Q <j.q@x.org>")
    assert parse_addresses(b" a@b.c ") == parse_addresses_full(b" a@b.c ")
