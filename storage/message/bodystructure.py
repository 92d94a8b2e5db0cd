"""BODYSTRUCTURE and BODY (non-extensible) of a scanned message, as Dovecot writes them.

Works only on the :class:`~cote.storage.message.scanner.Part` tuples, so a cached scan
needs no access to the message file.
"""

from __future__ import annotations

from collections.abc import Sequence

from cote import imapwire
from cote.storage.message.mimeparams import Params
from cote.storage.message.scanner import MESSAGE, MULTIPART, Part

_NIL = imapwire.NIL
_EMPTY_EXT = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
_EMPTY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'


def children_of(parts: Sequence[Part]) -> list[list[int]]:
    """For every part, the indexes of its direct children."""
    kids: list[list[int]] = [[] for _ in parts]
    for i, p in enumerate(parts):
        if p.parent >= 0:
            kids[p.parent].append(i)
    return kids


def _params(params: Params) -> bytes:
    if not params:
        return _NIL
    return b"(" + b" ".join(imapwire.string(v) for v in params) + b")"


def _ext_common(p: Part) -> bytes:
    if p.disposition is None:
        disp = _NIL
    else:
        disp = b"(" + imapwire.string(p.disposition) + b" " + _params(p.disp_params) + b")"
    lang = imapwire.string_list(p.language) if p.language else _NIL
    return b" " + disp + b" " + lang + b" " + imapwire.nstring_nolf(p.location)


def _write(parts: Sequence[Part], kids: list[list[int]], i: int, ext: bool,
           out: list[bytes]) -> None:
    p = parts[i]
    out.append(b"(")
    if p.kind == MULTIPART:
        if kids[i]:
            for k in kids[i]:
                _write(parts, kids, k, ext, out)
        else:
            out.append(_EMPTY_EXT if ext else _EMPTY)
        out.append(b" " + imapwire.string(p.subtype))
        if ext:
            out.append(b" " + _params(p.params) + _ext_common(p))
        out.append(b")")
        return
    out.append(b" ".join((
        imapwire.string(p.ctype), imapwire.string(p.subtype), _params(p.params),
        imapwire.nstring_nolf(p.content_id), imapwire.nstring_nolf(p.description),
        imapwire.string(p.encoding) if p.encoding else b'"7bit"',
        b"%d" % p.body_vsize,
    )))
    if p.kind == MESSAGE and kids[i]:
        child = kids[i][0]
        out.append(b" " + (parts[child].envelope or _NIL) + b" ")
        _write(parts, kids, child, ext, out)
        out.append(b" %d" % p.body_lines)
    elif p.ctype.lower() == b"text":
        out.append(b" %d" % p.body_lines)
    if ext:
        out.append(b" " + imapwire.nstring_nolf(p.md5) + _ext_common(p))
    out.append(b")")


def bodystructure(parts: Sequence[Part], index: int = 0) -> bytes:
    """BODYSTRUCTURE of the part at ``index`` (the whole message by default)."""
    out: list[bytes] = []
    _write(parts, children_of(parts), index, True, out)
    return b"".join(out)


def body(parts: Sequence[Part], index: int = 0) -> bytes:
    """BODY (the non-extensible form)."""
    out: list[bytes] = []
    _write(parts, children_of(parts), index, False, out)
    return b"".join(out)
