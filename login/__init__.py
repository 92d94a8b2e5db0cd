"""Pre-authentication IMAP, POP3 and ManageSieve login processes."""
