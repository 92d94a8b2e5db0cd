"""Properties of cote.variables that hold for any template and any value."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from cote.variables import (
    Template,
    UnknownVariableError,
    VariableError,
    compile_template,
    escape_backslash,
    expand,
    user_values,
)

VALUES: dict[str, str | None] = {
    **user_values("John.Doe@Example.ORG"), "service": "imap", "home": "/home/jd",
    "local_ip": "10.0.0.1", "remote_ip": "192.0.2.7", "uid": "1000", "pid": "4242",
    "session": "abc", "mechanism": None,
}
FIELDS = {"userdb": {"quota": "1G"}, "passdb": {"nopassword": "y"}}

text_no_percent = st.text(st.characters(blacklist_characters="%", blacklist_categories=("Cs",)))
template_chars = st.sampled_from(list("%{}:;.-0123456789\\LUERXHNMDTundshlrpiz ab"))
templates = st.lists(template_chars, max_size=40).map("".join)


@given(text_no_percent)
def test_text_without_percent_is_unchanged(text: str) -> None:
    assert expand(text, VALUES) == text


@given(text_no_percent, text_no_percent)
def test_double_percent_is_one_literal_percent(left: str, right: str) -> None:
    assert expand(f"{left}%%{right}", {}) == f"{left}%{right}"


@given(st.text(st.characters(blacklist_categories=("Cs",))))
def test_escaped_percent_signs_come_back(text: str) -> None:
    assert expand(text.replace("%", "%%"), {}) == text


@settings(max_examples=500)
@given(templates)
def test_expansion_only_raises_variable_errors(template: str) -> None:
    try:
        result = expand(template, VALUES, fields=FIELDS)
    except VariableError as exc:
        assert str(exc)
    else:
        assert isinstance(result, str)


@settings(max_examples=300)
@given(templates)
def test_compiled_and_one_shot_forms_agree(template: str) -> None:
    compiled = compile_template(template)
    try:
        expected = expand(template, VALUES, fields=FIELDS)
    except VariableError as exc:
        try:
            compiled.expand(VALUES, fields=FIELDS)
        except VariableError as again:
            assert str(again) == str(exc)
        else:
            raise AssertionError("compiled template did not fail") from exc
    else:
        assert compiled.expand(VALUES, fields=FIELDS) == expected


@given(st.text(min_size=0, max_size=30, alphabet=st.characters(codec="ascii")),
       st.integers(0, 40), st.integers(0, 40))
def test_substring_is_a_python_slice(value: str, offset: int, width: int) -> None:
    template = f"%{offset}.{width}{{v}}"
    expected = value[offset:] if offset < len(value) else ""
    if width:
        expected = expected[:width]
    assert expand(template, {"v": value}) == expected


@given(st.text(max_size=30, alphabet=st.characters(codec="ascii")), st.integers(1, 40))
def test_negative_offset_takes_the_tail(value: str, n: int) -> None:
    expected = value[-n:] if n <= len(value) else value
    assert expand(f"%-{n}.{{v}}", {"v": value}) == expected


@given(st.text(max_size=30, alphabet=st.characters(codec="ascii")), st.integers(1, 40))
def test_zero_width_pads_and_never_truncates(value: str, n: int) -> None:
    assert expand(f"%0{n}{{v}}", {"v": value}) == value.rjust(n, "0")


@given(st.text(max_size=40))
def test_md5_modifier_is_the_hex_digest(value: str) -> None:
    value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert expand("%M{v}", {"v": value}) == hashlib.md5(value.encode()).hexdigest()


@given(st.text(max_size=30), st.integers(1, 5000))
def test_hash_modulo_stays_below_the_width(value: str, modulo: int) -> None:
    value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    for m in "HN":
        assert int(expand(f"%{modulo}{m}{{v}}", {"v": value}), 16) < modulo


@given(st.text(max_size=30, alphabet=st.characters(codec="ascii")))
def test_escape_applies_to_values_not_to_template_text(value: str) -> None:
    def quote(s: str) -> str:
        return s.replace("'", "''")
    result = expand("WHERE u='%{v}' AND x='it''s'", {"v": value}, escape=quote)
    assert result == f"WHERE u='{quote(value)}' AND x='it''s'"


def test_escape_is_applied_after_modifiers_and_once_for_conditionals() -> None:
    def tag(s: str) -> str:
        return f"<{s}>"
    assert expand("%Lu/%2.1n/%%", {"user": "A'B", "username": "xyz"}, escape=tag) == "<a'b>/<z>/%"
    assert expand("%{if;%u;eq;<x>;yes-%u;no}", {"user": "x"}, escape=tag) == "yes-<x>"
    assert expand("%{userdb:quota}", {}, fields=FIELDS, escape=tag) == "<1G>"


def test_escape_modifier_backslash_quotes() -> None:
    assert expand("%Eu", {"user": "o'hara \"x\" \\"}) == "o\\'hara \\\"x\\\" \\\\"
    assert escape_backslash("plain") == "plain"


def test_unknown_variables_raise_with_dovecots_message() -> None:
    for template, name in (("%z", "z"), ("%{nosuch}", "nosuch"), ("%{a}%z%{b}", "b"),
                           ("%z%y", "z"), ("%{md5:nosuch}", "nosuch")):
        try:
            expand(template, VALUES)
        except UnknownVariableError as exc:
            assert exc.name == name
            assert str(exc) == f"Unknown variable '%{name}'"
        else:
            raise AssertionError(template)


def test_none_means_known_but_empty_and_globals_fill_in() -> None:
    assert expand("[%m][%{mechanism}]", VALUES) == "[][]"
    assert expand("%{pid}", {}).isdigit()
    assert expand("%{uid}:%{gid}", {}).replace(":", "").isdigit()
    assert expand("%{pid}", {"pid": "7"}) == "7"


def test_old_long_names_are_aliases() -> None:
    assert expand("%{rip} %{lip} %{mech}", {"remote_ip": "1.2.3.4", "local_ip": "5.6.7.8",
                                            "mechanism": "PLAIN"}) == "1.2.3.4 5.6.7.8 PLAIN"


def test_one_letter_key_overrides_the_default_long_name() -> None:
    assert expand("%k", {"k": "TLSv1.3", "cert": "valid"}) == "TLSv1.3"
    assert expand("%k", {"cert": "valid"}) == "valid"


def test_user_values_split_like_dovecot() -> None:
    assert user_values("a@b@c.d") == {"user": "a@b@c.d", "username": "a", "domain": "b@c.d",
                                      "domain_first": "b", "domain_last": "c.d"}
    assert user_values("a@b.c")["domain_last"] == "b.c"
    assert user_values("plain")["domain"] is None


def test_template_objects_are_reusable() -> None:
    template = compile_template("maildir:/var/vmail/%d/%n")
    assert isinstance(template, Template) and template.has_variables
    assert template.expand(user_values("x@y.z")) == "maildir:/var/vmail/y.z/x"
    assert template.expand(user_values("p@q.r")) == "maildir:/var/vmail/q.r/p"
    assert not compile_template("static").has_variables
    assert compile_template("").expand({}) == ""


def test_pkcs5_is_refused_clearly() -> None:
    try:
        expand("%{pkcs5:user}", VALUES)
    except VariableError as exc:
        assert "pkcs5" in str(exc)
    else:
        raise AssertionError("pkcs5 expanded")
