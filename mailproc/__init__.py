"""Post-login mail processes: IMAP, POP3, LMTP and ManageSieve sessions, as the mail user."""
