"""The agent: where flows run (account and credential resolution, mailbox sessions, backups)."""
