"""A keyring backend for tests, selected with PYTHON_KEYRING_BACKEND=filekeyring.FileKeyring.

Headless CI machines have no Secret Service / Keychain daemon, so this
stands in for one through keyring's own backend interface: autosmime's code
path (detect a real keyring, store, read back) runs unchanged. Its store is
a JSON file named by AUTOSMIME_TEST_KEYRING.
"""

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend


class FileKeyring(KeyringBackend):
    priority = 10

    def _path(self) -> Path:
        return Path(os.environ["AUTOSMIME_TEST_KEYRING"])

    def _load(self) -> dict:
        p = self._path()
        return json.loads(p.read_text()) if p.exists() else {}

    def get_password(self, service, username):
        return self._load().get(f"{service}\0{username}")

    def set_password(self, service, username, password):
        data = self._load()
        data[f"{service}\0{username}"] = password
        self._path().write_text(json.dumps(data))

    def delete_password(self, service, username):
        data = self._load()
        data.pop(f"{service}\0{username}", None)
        self._path().write_text(json.dumps(data))
