"""Fixtures shared by the vault tests (helpers that are not fixtures live in backup_support / store_support)."""

import pytest

from tests.vault import backup_support as support


@pytest.fixture
def devices(mailstack, mail_user, tmp_path):
    """OLD with two keys, a backup and the code; NEW with only the account configured."""
    email, password = mail_user
    account = mailstack.account(email)
    old = support.make_device(tmp_path, "old", account, password, keys=2)
    support.back_up(old)
    new = support.make_device(tmp_path, "new", account, password)
    return old, new, account, password
