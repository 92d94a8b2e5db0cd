"""Password schemes as ``doveadm pw`` knows them: verify, generate, credentials for SASL."""

from cote.auth.schemes.registry import (
    SCHEMES,
    CredentialsUnavailable,
    Encoding,
    Scheme,
    SchemeError,
    ScramKeys,
    credentials,
    decode_stored,
    digest_md5_user_realm,
    generate,
    is_expensive,
    lookup,
    parse_scram,
    scheme_names,
    scram_keys,
    split_stored,
    verify,
)

__all__ = [
    "SCHEMES", "CredentialsUnavailable", "Encoding", "Scheme", "SchemeError", "ScramKeys",
    "credentials", "decode_stored", "digest_md5_user_realm", "generate", "is_expensive",
    "lookup", "parse_scram", "scheme_names", "scram_keys", "split_stored", "verify",
]
