"""ManageSieve (RFC 5804): the mail process side, the wire format and the Sieve checker."""
