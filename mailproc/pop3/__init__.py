"""POP3: the sans-IO protocol core shared by pop3-login and the POP3 mail process."""
