"""SEARCH header and body keys against Dovecot on the same tricky messages (users
``dcsearch``/``cotesearch``): encoded and folded subjects, address headers with comments,
quoted names and groups, repeated fields, MIME part headers, message/rfc822 parts,
base64/quoted-printable/8-bit text parts and non-text parts. Each SEARCH is sent twice to
cote: the first answer is built from the message files, the second from the header
cache the first one filled; both must equal Dovecot's."""

from __future__ import annotations

import pytest

from tests.imapd.conftest import PASSWORD, cote_client, dovecot_client, normalize
from tests.support.dovecot import DovecotOracle

EXTRA_PAIRS = ("search",)

MESSAGES = [
    b'From: "Doe, John" (the boss) <John.Doe@Example.COM>\r\n'
    b"To: undisclosed: alpha@one.example, beta@two.example;\r\n"
    b"Cc: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <jurgen@three.example>\r\n"
    b"Subject: =?iso-8859-1?q?Quarterly_r=E9sum=E9?=\r\n =?utf-8?b?c3RhdHVz?= report\r\n"
    b"X-Custom: folded\r\n\tvalue here\r\n"
    b"\r\nplain body with zephyrine inside\r\n",

    b"From: plain@four.example\r\nTo: first@five.example\r\nTo: Second <second@six.example>\r\n"
    b"Bcc: hidden@seven.example\r\nSubject: re: [list] Fwd: Budget   numbers\r\n"
    b"X-Empty:\r\nX-Ws: a  b\r\nX-Tab: c\td\r\nX-Fold2: e\r\n  f\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b"preamble words\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\nX-Part-Note: partheaderword\r\n\r\n"
    b"caf=C3=A9 and zephy=\r\nrine split by a soft break\r\n"
    b"--b1\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"PGI+aHRtbHdvcmQ8L2I+IFpFUEhZUklORQ==\r\n"
    b"--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"c2VjcmV0d29yZCBpbiBhIHBkZg==\r\n"
    b"--b1\r\nContent-Type: application/octet-stream\r\n\r\nrawbinaryword\r\n"
    b"--b1--\r\nepilogue words\r\n",

    b"From: =?utf-8?b?w4lsb2RpZQ==?= <elodie@eight.example>\r\nSubject: inner mail\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b2\r\n\r\n--b2\r\n"
    b"Content-Type: text/plain\r\n\r\nouter text\r\n--b2\r\nContent-Type: message/rfc822\r\n\r\n"
    b"From: inner@nine.example\r\nSubject: innerheaderword\r\n\r\ninnerbodyword\r\n--b2--\r\n",

    b"From: latin@ten.example\r\nSubject: latin\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"un caf\xe9 cr\xe8me\r\nUPPER CASE ZEPHYRINE\r\n",

    b"From: nobody@eleven.example\r\nSubject: attachment only\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: application/octet-stream\r\n\r\nzephyrine in a non-text body\r\n",

    b"From: undecodable@twelve.example\r\nSubject: =?x-unknown?q?strange?= and =?utf-8?q?bad\r\n"
    b"Content-Type: text/plain; charset=x-unknown-charset\r\n\r\nstrangebody\r\n",

    b"From: unicode@thirteen.example\r\nSubject: =?utf-8?q?Stra=C3=9Fe_=EF=AC=81nal_=E2=84=AAelvin?=\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    b"Stra\xc3\x9fe \xef\xac\x81nal \xe2\x84\xaaelvin \xc4\xb0stanbul \xc5\xbfun "
    b"cafe\xcc\x81 na\xc3\xafve \xc3\x85ngstr\xc3\xb6m \xce\xa3\xce\xbf\xcf\x86\xce\xaf\xce\xb1\r\n",

    b"From: =?utf-8?q?Team_=C3=89t=C3=A9?=: one@x.example, two@y.example;\r\n"
    b"To: <@route.example:routed@z.example>, missingdomain, \"quoted local\"@q.example\r\n"
    b"Cc: (only a comment)\r\nBcc: O'Brien <ob@w.example>, Mr. Dot <dot@w.example>\r\n"
    b"Reply-To: empty:;\r\nSubject: addresses\r\n\r\nbody\r\n",

    b"From: edge@cases.example\r\nSubject: =?utf-8?q?a?= =?utf-8?q?b?= foo=?utf-8?q?bar?=baz\r\n"
    b"X-Trail: value   \r\nX-Latin: caf\xe9 8bit\r\nX-Bad: =?utf-8?b?!!!?= tail\r\n"
    b"X-Tabbed:\tlead\ttab\r\nX-Blank: first\r\n \r\n last\r\n\r\nbody\r\n",

    b"From: bodies@cases.example\r\nSubject: bodies\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
    b"Content-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\n"
    b"Content-Type: TEXT/PLAIN; charset=UTF-16\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"//5oAGUAbABsAG8AdwBpAGQAZQA=\r\n--i\r\nContent-Type: text/html\r\n\r\n"
    b"<p>caf&eacute; ampword</p>\r\n--i--\r\n--o\r\nContent-Type: text/plain\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\nbroken=ZZqp and =3D sign\r\n--o\r\n"
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nuuword\r\n"
    b"--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: nested\r\n"
    b"Content-Type: message/rfc822\r\n\r\nSubject: deeper\r\n\r\ndeepbodyword\r\n--o--\r\n",

    b"Subject: no from at all\r\n\r\n" + b"".join(b"line %04d filler\r\n" % i
                                                 for i in range(300)) + b"zephyrine last\r\n",
]

SEARCHES: list[bytes] = [
    b"SUBJECT quarterly", b"SUBJECT r\xc3\xa9sum\xc3\xa9", b"CHARSET UTF-8 SUBJECT r\xc3\xa9sum\xc3\xa9",
    b"SUBJECT \"status report\"", b"SUBJECT \"sum\xc3\xa9 status\"", b"SUBJECT budget",
    b"SUBJECT \"budget   numbers\"", b"SUBJECT \"fwd: budget\"", b"SUBJECT strange",
    b"SUBJECT \"\"", b"SUBJECT zzz",
    b"FROM doe", b"FROM \"doe, john\"", b"FROM boss", b"FROM john.doe@example.com",
    b"FROM \"<john\"", b"FROM \"\\\"doe\"", b"FROM plain", b"FROM \"\"", b"FROM elodie",
    b"CHARSET UTF-8 FROM \xc3\x89lodie", b"FROM example",
    b"TO alpha", b"TO undisclosed", b"TO second", b"TO first", b"TO \"second <\"",
    b"CC j\xc3\xbcrgen", b"CHARSET UTF-8 CC m\xc3\xbcller", b"CC jurgen@three", b"BCC hidden",
    b"BCC \"\"", b"CC \"\"",
    b"HEADER X-Custom \"folded\"", b"HEADER X-Custom \"folded\tvalue\"",
    b"HEADER X-Custom \"folded value\"", b"HEADER X-Custom \"\"", b"HEADER X-Empty \"\"",
    b"HEADER X-Missing \"\"", b"HEADER Subject latin", b"HEADER MIME-Version 1.0",
    b"HEADER From \"the boss\"", b"HEADER To \"alpha@one\"",
    b"OR SUBJECT latin FROM plain", b"NOT FROM example", b"SUBJECT latin FROM latin",
    b"BODY zephyrine", b"TEXT zephyrine", b"BODY ZEPHYRINE", b"BODY htmlword",
    b"BODY secretword", b"BODY rawbinaryword", b"BODY preamble", b"BODY epilogue",
    b"BODY caf\xc3\xa9", b"CHARSET UTF-8 BODY cr\xc3\xa8me", b"BODY partheaderword",
    b"TEXT partheaderword", b"TEXT innerheaderword", b"BODY innerheaderword",
    b"BODY innerbodyword", b"TEXT \"subject: latin\"", b"TEXT quarterly", b"BODY quarterly",
    b"TEXT \"x-custom\"", b"BODY strangebody", b"TEXT doe", b"BODY \"\"", b"TEXT \"\"",
    b"SUBJECT \"budget numbers\"", b"HEADER Subject \"budget numbers\"",
    b"HEADER Subject \"budget   numbers\"", b"HEADER X-Ws \"a  b\"", b"HEADER X-Ws \"a b\"",
    b"HEADER X-Custom \"folded  value\"", b"SUBJECT x-unknown", b"SUBJECT \"?q?\"",
    b"SUBJECT and", b"SUBJECT bad", b"SUBJECT \"=?\"", b"TEXT \"subject:latin\"",
    b"TEXT \"t: lat\"", b"TEXT \"x-custom: folded value\"", b"TEXT \"x-custom: folded\"",
    b"TEXT \"boss\"", b"TEXT \"j\xc3\xbcrgen\"", b"TEXT \"undisclosed: alpha\"",
    b"HEADER X-Tab \"c d\"", b"HEADER X-Tab \"c\td\"", b"HEADER X-Fold2 \"e f\"",
    b"HEADER X-Fold2 \"e  f\"", b"HEADER X-Fold2 \"e   f\"", b"SUBJECT \" budget\"",
    b"TEXT \"budget   numbers\"", b"TEXT \"x-fold2: e  f\"", b"TEXT \"x-fold2: e f\"",
    b"TEXT \"x-tab: c d\"", b"TEXT \"\tvalue\"",
    b"TEXT \"here x-\"", b"TEXT \"1.0 content-type\"", b"TEXT \"x-empty:x-ws\"",
    b"TEXT \"x-empty: x-ws\"", b"TEXT \"x-empty:\"", b"TEXT \"x-empty: \"",
    b"HEADER Subject \"quarterly r\xc3\xa9sum\xc3\xa9 status\"", b"SUBJECT \"r\xc3\xa9sum\xc3\xa9 status\"",
    b"TEXT \"numbers preamble\"", b"TEXT \"only zephyrine\"",
    b"BODY strasse", b"BODY stra\xc3\x9fe", b"BODY final", b"BODY kelvin", b"BODY istanbul",
    b"BODY sun", b"BODY cafe", b"BODY caf\xc3\xa9", b"BODY naive", b"BODY angstrom",
    b"BODY \xcf\x83\xce\xbf\xcf\x86\xce\xaf\xce\xb1", b"BODY \xce\xa3\xce\x9f\xce\xa6",
    b"SUBJECT strasse", b"SUBJECT final", b"SUBJECT kelvin", b"SUBJECT stra\xc3\x9fe",
    b"FROM \"team \xc3\xa9t\xc3\xa9: one\"", b"FROM \"two@y.example;\"", b"TO route.example",
    b"TO \"<@route\"", b"TO missing_domain", b"TO missingdomain@", b"TO \"\\\"quoted local\\\"\"",
    b"TO \"quoted local\"", b"CC comment", b"CC \"\"", b"CC missing", b"BCC \"o'brien\"",
    b"BCC \"\\\"o\\\\'brien\"", b"BCC \"\\\"mr. dot\\\"\"", b"BCC \"mr. dot <\"",
    b"HEADER Reply-To empty", b"FROM syntax_error", b"TO \", missing\"",
    b"SUBJECT \"ab foo\"", b"SUBJECT \"a b\"", b"SUBJECT foobarbaz", b"SUBJECT \"=?utf\"",
    b"SUBJECT \"foo=\"", b"HEADER X-Trail \"value \"", b"HEADER X-Trail \"value   \"",
    b"HEADER X-Latin caf\xc3\xa9", b"CHARSET UTF-8 HEADER X-Latin caf\xc3\xa9",
    b"HEADER X-Bad tail", b"HEADER X-Bad \"!!!\"", b"HEADER X-Bad \"=?\"",
    b"HEADER X-Tabbed \"lead\ttab\"", b"HEADER X-Tabbed \"\tlead\"", b"HEADER X-Tabbed lead",
    b"HEADER X-Blank \"first  last\"", b"HEADER X-Blank \"first last\"",
    b"HEADER X-Blank \"first   last\"", b"TEXT \"x-tabbed:\tlead\"", b"TEXT \"x-tabbed: lead\"",
    b"BODY hellowide", b"CHARSET UTF-8 BODY hellowide", b"BODY ampword", b"BODY eacute",
    b"BODY \"broken=zz\"", b"BODY \"= sign\"", b"BODY \"=3d sign\"", b"BODY uuword",
    b"BODY deepbodyword", b"TEXT deeper", b"BODY deeper", b"TEXT \"subject: nested\"",
    b"BODY \"line 0150 filler\"", b"NOT BODY zephyrine", b"OR BODY htmlword SUBJECT latin",
]


def _fill(dc: DovecotOracle, user: str) -> None:
    c = dovecot_client(dc, user)
    try:
        assert b" OK " in c.command("CREATE Searched")
        for msg in MESSAGES:
            reply = c.command(b'APPEND Searched "14-Jul-2021 10:20:30 +0000" {%d+}\r\n%s'
                              % (len(msg), msg))
            assert b" OK " in reply.splitlines()[-1], reply
    finally:
        c.command("LOGOUT")
        c.close()


@pytest.mark.oracle
def test_header_and_body_search_keys_answer_like_dovecot(store: DovecotOracle) -> None:
    for user in ("dcsearch", "cotesearch"):
        _fill(store, user)
    assert PASSWORD
    theirs = dovecot_client(store, "dcsearch")
    ours = cote_client(store, "cotesearch")
    mismatches = []
    try:
        for c in (theirs, ours):
            assert b" OK " in c.command("SELECT Searched")
        for n, key in enumerate(SEARCHES):
            expected = normalize(theirs.command(b"SEARCH " + key, f"s{n}"))
            for attempt in ("cold", "warm"):
                got = normalize(ours.command(b"SEARCH " + key, f"s{n}"))
                if got != expected:
                    mismatches.append(f"{key!r} ({attempt})\n--- dovecot\n"
                                      f"{expected.decode('latin-1')}--- cote\n"
                                      f"{got.decode('latin-1')}")
    finally:
        for c in (theirs, ours):
            c.command("LOGOUT")
            c.close()
    assert not mismatches, "\n".join(mismatches)
