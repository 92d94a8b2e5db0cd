"""parse_addresses' fast paths (plain, named and quoted-name lists) give exactly what the
general parser gives (the one checked against Dovecot's ENVELOPE) on the shapes they take."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cote.storage.message.address import parse_addresses, parse_addresses_full

_NAME = st.text(alphabet=st.sampled_from(list("aZ09 ,.;:<>@()'\t\\\"é=?!#[]")), max_size=12)
_ATOM = st.text(alphabet=st.sampled_from(list("az09.-_+'")), min_size=0, max_size=6)
_WS = st.sampled_from(["", " ", "  ", "\n\t", " \n ", "\t"])


@st.composite
def _quoted_list(draw: st.DrawFn) -> bytes:
    items = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(_NAME)
        items.append(f'{draw(_WS)}"{name}"{draw(_WS)}<{draw(_ATOM)}@{draw(_ATOM)}>{draw(_WS)}')
    sep = "," if draw(st.booleans()) else draw(st.sampled_from([",", ";", " ", ",,"]))
    return (sep.join(items) + draw(st.sampled_from(["", ",", " "]))).encode()


@settings(max_examples=1500, deadline=None)
@given(_quoted_list())
def test_quoted_name_lists(value: bytes) -> None:
    assert parse_addresses(value) == parse_addresses_full(value)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('az.@<>" ,\t\n')), max_size=30))
def test_any_short_value(value: str) -> None:
    raw = value.encode()
    assert parse_addresses(raw) == parse_addresses_full(raw)


def test_examples() -> None:
    value = b'"Tina Schmidt" <tina.schmidt@corp.example>,\n\t"Anna Quinn" <anna@example.org>'
    got = parse_addresses(value)
    assert [(a.name, a.mailbox, a.domain) for a in got] == [
        (b"Tina Schmidt", b"tina.schmidt", b"corp.example"), (b"Anna Quinn", b"anna", b"example.org")]
    assert parse_addresses(b'"" <a@b>')[0].name is None
