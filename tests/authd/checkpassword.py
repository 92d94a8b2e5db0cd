#!/usr/bin/python3
"""A small checkpassword program for the differential tests (qmail interface with Dovecot's
extensions): ``checkpassword.py <users file> <reply program>``.

fd 3 carries ``user NUL password NUL timestamp NUL``. Users file lines are
``name:password:home:extra`` (extra: space-separated ``key=value``, set in the environment
and named in ``EXTRA`` for checkpassword-reply). A password of ``tempfail`` exits 111, one of
``slow`` refuses after 3 seconds.
With ``AUTHORIZED=1`` (a userdb or credentials lookup) no password is checked: a known user
goes on with ``AUTHORIZED=2`` (reply exits 2), an unknown one exits 3. What the daemon put in
the environment comes back as ``x_*`` extra fields, so the tests see it.
"""

import os
import sys
import time

data = os.read(3, 600)
os.close(3)
user, password = [*data.split(b"\0"), b"", b""][:2]
users = {}
with open(sys.argv[1], "rb") as f:
    for line in f.read().splitlines():
        cols = line.split(b":", 3)
        users[cols[0]] = cols
entry = users.get(user)
lookup = os.environ.get("AUTHORIZED") == "1"
if entry is None:
    sys.exit(3 if lookup else 1)
if entry[1] == b"tempfail":
    sys.exit(111)
if entry[1] == b"slow":
    time.sleep(3)
    sys.exit(1)
if not lookup and entry[1] != password:
    sys.exit(1)
env = dict(os.environ)
extra = ["userdb_uid", "userdb_gid"]
env["userdb_uid"] = env["userdb_gid"] = "1000"
for word in entry[3].decode().split():
    key, _, value = word.partition("=")
    env[key] = value
    extra.append(key)
for key in ("SERVICE", "TCPREMOTEIP", "TCPLOCALPORT", "PROTO", "AUTH_USER", "AUTH_SERVICE",
            "AUTH_REMOTE_IP", "AUTH_MECH", "MASTER_USER", "CREDENTIALS_LOOKUP", "SCHEME"):
    if key in os.environ:
        env["x_" + key.lower()] = os.environ[key]
        extra.append("x_" + key.lower())
if os.environ.get("CREDENTIALS_LOOKUP") == "1":
    env["password"] = "{PLAIN}" + entry[1].decode()
    extra.append("password")
env["USER"] = user.decode()
env["HOME"] = entry[2].decode()
env["EXTRA"] = " ".join(extra)
if lookup:
    env["AUTHORIZED"] = "2"
os.execve(sys.argv[2], sys.argv[2:], env)
