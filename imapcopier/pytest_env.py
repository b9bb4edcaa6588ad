"""Loaded by pytest (`-p imapcopier.pytest_env`) before Django is set up: a private environment for the suite.

Every test session gets its own data directory and encryption key, inherited by the subprocesses
(qcluster, web server) that tests start, so nothing touches an operator's data directory.
"""

from __future__ import annotations

import os
import tempfile

from cryptography.fernet import Fernet

os.environ.setdefault("IMAPCOPIER_DATA_DIR", tempfile.mkdtemp(prefix="imapcopier-test-"))
os.environ.setdefault("IMAPCOPIER_FERNET_KEYS", Fernet.generate_key().decode())
os.environ.setdefault("SECRET_KEY", "test-" + Fernet.generate_key().decode())
os.environ.setdefault("IMAPCOPIER_MANIFEST_STATIC", "0")
# Login lockout counts failures per user and address; tests that need it turn it on themselves.
os.environ.setdefault("LOGIN_LOCKOUT", "0")
