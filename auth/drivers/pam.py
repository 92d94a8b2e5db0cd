"""``passdb pam``: the password is checked by the system's PAM stack, in an auth-worker
process running as root (PAM modules such as pam_unix read /etc/shadow and may block).

``args = [session=yes] [setcred=yes] [failure_show_msg=yes] [max_requests=N]
[cache_key=…] [service name | %s | *]``: the PAM service is ``dovecot`` unless named,
``%s``/``*`` use the login's service (imap, pop3 …). PAM_RHOST is the client's IP and
PAM_RUSER the user. PAM's account check runs too: an expired account or password fails with
``pass_expired``. ``max_requests=N`` recycles a worker after N requests; ``cache_key=``
lets the auth cache keep PAM's successes (a hash of the password) under those variables.
PAM cannot give out passwords, so lookups without a password (auth-master PASS, CRAM-MD5)
find no usable scheme.
"""

from __future__ import annotations

from cote.auth.cache import cache_key_template
from cote.auth.drivers.base import DriverError, PassdbLookup
from cote.auth.drivers.fields import rename
from cote.auth.drivers.plaintext import PlaintextPassdb
from cote.auth.mechanisms import PassdbResult
from cote.auth.request import AuthRequest
from cote.auth.workerclient import WorkerClient, WorkerError

RESULTS = {r.value: r for r in PassdbResult}


class PamPassdb(PlaintextPassdb):
    name = "pam"

    def __init__(self, args: str) -> None:
        super().__init__(args)
        self.session = self.setcred = self.show_msg = False
        max_requests = 0
        self.service = "dovecot"
        for word in args.split():
            key, eq, value = word.partition("=")
            yes = value.lower() in ("yes", "y", "1")
            if eq and key == "session":
                self.session = yes
            elif eq and key == "setcred":
                self.setcred = yes
            elif eq and key == "failure_show_msg":
                self.show_msg = yes
            elif eq and key == "max_requests":
                if not value.isdigit():
                    raise DriverError(f"pam: max_requests={value!r} is not a number")
                max_requests = int(value)
            elif eq and key == "cache_key":
                # PAM's answer depends on what the admin says (e.g. %u%s): the auth cache
                # keeps logins under these variables, as Dovecot.
                self.cache_key = cache_key_template(value)
            elif eq:
                raise DriverError(f"pam: Unknown setting: {key}")
            else:
                self.service = word
        self.worker = WorkerClient(max_requests=max_requests)

    async def lookup(self, request: AuthRequest) -> PassdbLookup:
        return PassdbLookup(PassdbResult.SCHEME_NOT_AVAILABLE,
                            log="pam: passdb lookups need a plaintext password")

    async def authenticate(self, request: AuthRequest, password: bytes) -> PassdbLookup:
        service = request.service if self.service in ("%s", "*") else self.service
        flags = ",".join(f for f, on in (("session", self.session),
                                         ("setcred", self.setcred)) if on)
        try:
            reply = await self.worker.call(
                "PAM", service or "dovecot", request.user,
                password.decode("utf-8", "surrogateescape"), request.remote_ip,
                request.user, flags)
        except WorkerError as e:
            return PassdbLookup(PassdbResult.INTERNAL_FAILURE, log=str(e))
        if reply[0] == "OK":
            if len(reply) > 1 and reply[1]:
                rename(request, "user", reply[1])
            # Dovecot keeps PAM's user name as a hidden field: an empty one on the wire.
            return PassdbLookup(PassdbResult.OK, None, {"": None}, "PLAIN")
        result = RESULTS.get(reply[1] if len(reply) > 1 else "", PassdbResult.INTERNAL_FAILURE)
        message = reply[2] if len(reply) > 2 else ""
        # failure_show_msg: Dovecot 2.3.19 puts the module's message in its log line only;
        # the client is never told it (checked with pam_nologin's message). An expired
        # account or password gets Dovecot's reason=Password expired from the chain.
        return PassdbLookup(result, log=message)
