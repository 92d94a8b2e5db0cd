"""SASL mechanism state machines on RFC test vectors and on arbitrary input."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cote.auth import mechanisms as mech
from cote.auth import schemes
from cote.auth.mechanisms.cram_md5 import CramMD5
from cote.auth.mechanisms.digest_md5 import DigestMD5, parse_directives
from cote.auth.mechanisms.scram import ScramSHA1, ScramSHA256
from cote.auth.protocol.auth_client import MechFlag

R = mech.PassdbResult


def ctx(**kw: object) -> mech.MechanismContext:
    return mech.MechanismContext(**kw)  # type: ignore[arg-type]


# -- PLAIN, RFC 4616 section 4 -----------------------------------------------------------------


def test_rfc4616_plain_examples() -> None:
    m = mech.create("PLAIN", ctx())
    assert m.start(b"\0tim\0tanstaaftanstaaf") == mech.VerifyPlain("tim", None, b"tanstaaftanstaaf")
    assert m.verified(R.OK) == mech.Success("tim")
    m = mech.create("PLAIN", ctx())
    assert m.start(b"Ursel\0Kurt\0xipj3plmq") == mech.VerifyPlain("Kurt", "Ursel", b"xipj3plmq")
    failure = m.verified(R.PASSWORD_MISMATCH)
    assert isinstance(failure, mech.Failure) and failure.user == "Kurt" and failure.code is None


def test_plain_internal_failure_maps_to_temp_fail() -> None:
    m = mech.create("PLAIN", ctx())
    m.start(b"\0u\0p")
    assert m.verified(R.INTERNAL_FAILURE) == mech.Failure("", "u", "temp_fail")


def test_login_prompts() -> None:
    m = mech.create("LOGIN", ctx())
    assert m.start(None) == mech.Challenge(b"Username:")
    assert m.respond(b"tim") == mech.Challenge(b"Password:")
    assert m.respond(b"secret") == mech.VerifyPlain("tim", None, b"secret")
    # A CONT while the passdb is busy is refused, as by Dovecot.
    late = mech.create("LOGIN", ctx())
    late.start(b"tim")
    late.respond(b"pw")
    step = late.respond(b"again")
    assert isinstance(step, mech.Failure) and step.reason == "Unexpected continuation"


# -- CRAM-MD5, RFC 2195 section 2 ------------------------------------------------------------------


def test_rfc2195_cram_md5_example() -> None:
    m = CramMD5(ctx())
    m.new_challenge = lambda: b"<1896.697170952@postoffice.reston.mci.net>"  # type: ignore[method-assign]
    assert m.start(None) == mech.Challenge(b"<1896.697170952@postoffice.reston.mci.net>")
    assert m.respond(b"tim b913a602c7eda7a495b4e6e7334d3890") == \
        mech.LookupCredentials("tim", None, "CRAM-MD5")
    context = schemes.credentials("{PLAIN}tanstaaftanstaaf", "CRAM-MD5")
    assert m.credentials(R.OK, context) == mech.Success("tim")


def test_cram_md5_from_stored_hmac_context_and_wrong_digest() -> None:
    stored = schemes.generate("CRAM-MD5", b"tanstaaftanstaaf")
    m = CramMD5(ctx())
    m.new_challenge = lambda: b"<1896.697170952@postoffice.reston.mci.net>"  # type: ignore[method-assign]
    m.start(None)
    m.respond(b"tim b913a602c7eda7a495b4e6e7334d3891")
    step = m.credentials(R.OK, schemes.credentials(stored, "CRAM-MD5"))
    assert isinstance(step, mech.Failure) and step.user == "tim"


# -- DIGEST-MD5, RFC 2831 section 4 ---------------------------------------------------------------

RFC2831_RESPONSE = (b'charset=utf-8,username="chris",realm="elwood.innosoft.com",'
                    b'nonce="OA6MG9tEQGm2hh",nc=00000001,cnonce="OA6MHXh6VqTrRk",'
                    b'digest-uri="imap/elwood.innosoft.com",'
                    b'response=d388dad90d4bbd760a152321f2143af7,qop=auth')


def test_rfc2831_digest_md5_example() -> None:
    m = DigestMD5(ctx(realms=("elwood.innosoft.com",), final_resp_ok=True))
    m.new_nonce = lambda: "OA6MG9tEQGm2hh"  # type: ignore[method-assign]
    challenge = m.start(None)
    assert isinstance(challenge, mech.Challenge)
    fields = parse_directives(challenge.data)
    assert fields["realm"] == b"elwood.innosoft.com" and fields["nonce"] == b"OA6MG9tEQGm2hh"
    assert fields["qop"] == b"auth" and fields["algorithm"] == b"md5-sess"
    assert m.respond(RFC2831_RESPONSE) == \
        mech.LookupCredentials("chris@elwood.innosoft.com", None, "DIGEST-MD5")
    creds = schemes.credentials("{PLAIN}secret", "DIGEST-MD5", user="chris@elwood.innosoft.com")
    assert m.credentials(R.OK, creds) == mech.Success(
        "chris@elwood.innosoft.com", final=b"rspauth=ea40f60335c427b5527b84dbabcdfffd")


def test_digest_md5_challenge_lists_every_realm_like_dovecot() -> None:
    m = DigestMD5(ctx(realms=("example.org", '"other.org"')))
    m.new_nonce = lambda: "Ern9ubQFqgW0Ava9fVboUA=="  # type: ignore[method-assign]
    # Dovecot 2.3 with: auth_realms = example.org "other.org"
    assert m.start(b"") == mech.Challenge(
        b'realm="example.org",realm=""other.org"",nonce="Ern9ubQFqgW0Ava9fVboUA==",qop="auth",'
        b'charset="utf-8",algorithm="md5-sess"')


def test_digest_md5_sends_rspauth_as_challenge_without_final_resp_ok() -> None:
    m = DigestMD5(ctx(realms=("elwood.innosoft.com",)))
    m.new_nonce = lambda: "OA6MG9tEQGm2hh"  # type: ignore[method-assign]
    m.start(None)
    m.respond(RFC2831_RESPONSE)
    creds = schemes.credentials("{PLAIN}secret", "DIGEST-MD5", user="chris@elwood.innosoft.com")
    assert m.credentials(R.OK, creds) == \
        mech.Challenge(b"rspauth=ea40f60335c427b5527b84dbabcdfffd")
    assert m.respond(b"") == mech.Success("chris@elwood.innosoft.com")


def test_digest_md5_rejects_replayed_or_foreign_nonce_and_bad_nc() -> None:
    for bad in (RFC2831_RESPONSE.replace(b"OA6MG9tEQGm2hh", b"OA6MG9tEQGm2hX"),
                RFC2831_RESPONSE.replace(b"nc=00000001", b"nc=00000002"),
                RFC2831_RESPONSE.replace(b"qop=auth", b"qop=auth-conf"),
                RFC2831_RESPONSE.replace(b"charset=utf-8", b"charset=latin1")):
        m = DigestMD5(ctx())
        m.new_nonce = lambda: "OA6MG9tEQGm2hh"  # type: ignore[method-assign]
        m.start(None)
        assert isinstance(m.respond(bad), mech.Failure)


# -- SCRAM, RFC 5802 section 5 and RFC 7677 section 3 ----------------------------------------------


SCRAM_VECTORS = {
    # RFC 5802 section 5
    "SCRAM-SHA-1": ("QSXCR+Q6sek8bf92", b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
                    "3rfcNHYJY1ZVvWVs7j",
                    b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
                    b"p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
                    b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="),
    # RFC 7677 section 3
    "SCRAM-SHA-256": ("W22ZaJ0SNY7soEsUEjb6gQ==", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                      "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                      b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                      b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                      b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
}


@pytest.mark.parametrize("name", list(SCRAM_VECTORS))
def test_rfc_scram_examples(name: str) -> None:
    salt, client_first, server_nonce, client_final, server_final = SCRAM_VECTORS[name]
    cls = ScramSHA1 if name == "SCRAM-SHA-1" else ScramSHA256
    hash_name = cls.hash_name
    keys = schemes.scram_keys(hash_name, b"pencil", base64.b64decode(salt), 4096)
    stored = "{" + name + "}" + keys.encode().decode()
    m = cls(ctx(final_resp_ok=True))
    m.server_nonce = lambda: server_nonce  # type: ignore[method-assign]
    assert m.start(client_first) == mech.LookupCredentials("user", None, name)
    first = m.credentials(R.OK, schemes.credentials(stored, name))
    assert isinstance(first, mech.Challenge)
    assert first.data.endswith(f",s={salt},i=4096".encode())
    assert m.respond(client_final) == mech.Success("user", final=server_final)


def test_scram_channel_binding_and_escaped_names() -> None:
    m = ScramSHA256(ctx())
    step = m.start(b"p=tls-server-end-point,,n=user,r=abc")
    assert isinstance(step, mech.Failure) and "Channel binding" in step.log
    m = ScramSHA256(ctx())
    assert m.start(b"y,a=ad=2Cmin,n=us=3Der,r=abc") == \
        mech.LookupCredentials("us=er", "ad,min", "SCRAM-SHA-256")
    m = ScramSHA256(ctx())
    assert isinstance(m.start(b"n,,n=us=41er,r=abc"), mech.Failure)
    m = ScramSHA256(ctx())
    assert isinstance(m.start(b"n,,m=ext,n=user,r=abc"), mech.Failure)


def test_scram_stored_hash_of_other_scheme_is_unavailable() -> None:
    m = ScramSHA1(ctx())
    m.start(b"n,,n=user,r=abc")
    step = m.credentials(R.SCHEME_NOT_AVAILABLE, None)
    assert isinstance(step, mech.Failure) and step.user == "user"


# -- the rest -----------------------------------------------------------------------------------


def test_anonymous_external_oauth() -> None:
    anon = mech.create("ANONYMOUS", ctx(anonymous_username="guest"))
    assert anon.start(b"me@example") == mech.Success("guest", fields=(("anonymous", None),),
                                                     log=("me@example", "login"))
    ext = mech.create("EXTERNAL", ctx(cert_username="certuser"))
    assert ext.start(b"") == mech.VerifyPlain("certuser", None, b"")
    assert isinstance(mech.create("EXTERNAL", ctx()).start(b""), mech.Failure)
    bearer = mech.create("OAUTHBEARER", ctx())
    assert bearer.start(b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
                        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==\x01\x01") == \
        mech.VerifyPlain("user@example.com", None, b"vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==")
    assert bearer.verified(R.PASSWORD_MISMATCH) == mech.Challenge(b'{"status":"invalid_token"}')
    assert bearer.respond(b"\x01") == mech.Failure("", "user@example.com")
    x = mech.create("XOAUTH2", ctx())
    assert x.start(b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3Rlck"
                   b"BhdHRhdmlzdGEuY29tCg\x01\x01") == \
        mech.VerifyPlain("someuser@example.com", None, b"ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    assert x.verified(R.OK) == mech.Success("someuser@example.com")


def test_mech_flags_as_dovecot_advertises_them() -> None:
    infos = {i.name: i.flags for i in mech.advertised(mech.MECHANISMS)}
    assert infos["PLAIN"] == MechFlag.PLAINTEXT
    assert infos["APOP"] == MechFlag.PRIVATE | MechFlag.DICTIONARY | MechFlag.ACTIVE
    assert infos["DIGEST-MD5"] == MechFlag.DICTIONARY | MechFlag.ACTIVE | MechFlag.MUTUAL_AUTH
    assert infos["EXTERNAL"] == MechFlag(0)


# -- robustness ------------------------------------------------------------------------------------

RESULTS = st.sampled_from(list(R))


@settings(max_examples=400, deadline=None)
@given(name=st.sampled_from(sorted(mech.MECHANISMS)),
       initial=st.one_of(st.none(), st.binary(max_size=80)),
       responses=st.lists(st.binary(max_size=80), max_size=4),
       results=st.lists(RESULTS, min_size=6, max_size=6),
       creds=st.binary(max_size=40))
def test_arbitrary_input_never_raises(name: str, initial: bytes | None, responses: list[bytes],
                                      results: list[R], creds: bytes) -> None:
    m = mech.create(name, ctx(cert_username="c", final_resp_ok=False))
    step = m.start(initial)
    feed = iter(responses)
    for result in results:
        if isinstance(step, (mech.Success, mech.Failure)):
            assert m.done
            break
        if isinstance(step, mech.VerifyPlain):
            step = m.verified(result)
        elif isinstance(step, mech.LookupCredentials):
            step = m.credentials(result, creds)
        else:
            response = next(feed, None)
            if response is None:
                break
            step = m.respond(response)
    assert isinstance(step, (mech.Challenge, mech.VerifyPlain, mech.LookupCredentials,
                             mech.Success, mech.Failure))
    after = m.respond(b"more")
    assert isinstance(after, (mech.Challenge, mech.VerifyPlain, mech.LookupCredentials,
                              mech.Success, mech.Failure))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_digest_directive_parser_only_raises_value_error(data: bytes) -> None:
    try:
        parse_directives(data)
    except ValueError:
        pass
