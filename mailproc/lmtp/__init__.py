"""LMTP (RFC 2033): the sans-IO protocol core and the delivery service."""
