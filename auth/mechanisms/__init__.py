"""SASL mechanisms as sans-IO server-side state machines, and their registry.

Usage by the auth daemon, per AUTH request::

    mech = create("SCRAM-SHA-256", MechanismContext(service="imap", final_resp_ok=...))
    step = mech.start(initial_response)          # then mech.respond(cont_data) per CONT
    # VerifyPlain → mech.verified(result); LookupCredentials → mech.credentials(result, raw)
    # Challenge → CONT; Success → OK; Failure → FAIL (after auth_failure_delay)
"""

from __future__ import annotations

from collections.abc import Iterable

from cote.auth.mechanisms.base import (
    FAIL_CODES,
    Challenge,
    Failure,
    LookupCredentials,
    Mechanism,
    MechanismContext,
    PassdbResult,
    Step,
    Success,
    VerifyPlain,
)
from cote.auth.mechanisms.cram_md5 import CramMD5
from cote.auth.mechanisms.digest_md5 import DigestMD5
from cote.auth.mechanisms.oauth import OAuthBearer, XOAuth2
from cote.auth.mechanisms.plain import Login, Plain
from cote.auth.mechanisms.scram import ScramSHA1, ScramSHA256
from cote.auth.mechanisms.simple import Anonymous, Apop, External
from cote.auth.protocol.auth_client import MechanismInfo

MECHANISMS: dict[str, type[Mechanism]] = {
    m.name: m for m in (Plain, Login, CramMD5, DigestMD5, ScramSHA1, ScramSHA256, Apop,
                        Anonymous, External, OAuthBearer, XOAuth2)
}


class UnknownMechanism(ValueError):
    pass


def mechanism_class(name: str) -> type[Mechanism]:
    try:
        return MECHANISMS[name.upper()]
    except KeyError:
        raise UnknownMechanism(f"Unknown authentication mechanism '{name}'") from None


def create(name: str, context: MechanismContext) -> Mechanism:
    return mechanism_class(name)(context)


def advertised(names: Iterable[str]) -> list[MechanismInfo]:
    """``MECH`` lines for ``auth_mechanisms`` (config order; unknown names raise)."""
    return [MechanismInfo(cls.name, cls.flags) for cls in map(mechanism_class, names)]


__all__ = [
    "FAIL_CODES", "MECHANISMS", "Challenge", "Failure", "LookupCredentials", "Mechanism",
    "MechanismContext", "PassdbResult", "Step", "Success", "UnknownMechanism", "VerifyPlain",
    "advertised", "create", "mechanism_class",
]
