"""The IMAP copy engine: plain Python, no Django. See types.py for the contract.

Public API (connection_test.py, listing.py, account.py, folders.py; the wire: imap.py, connect.py, append.py):
    test_connection(mailbox) -> ConnectionTestResult
    tls_context(verify_tls, ca_certificate="") -> ssl.SSLContext  (the one TLS rule, shared)
    list_folders(mailbox, with_counts=False) -> list[FolderInfo]
    plan_folders(source, destination, mapping) -> list[FolderPlan]
    map_folders(...) -> list[FolderPlan]  (the pure mapping behind plan_folders)
    copy_account(source, destination, *, state, folder_mapping=None, on_progress=None,
                 should_stop=None, connections=2) -> AccountResult
"""

from __future__ import annotations

from .account import copy_account
from .connect import tls_context
from .connection_test import test_connection
from .folders import map_folders
from .imap import ConnectError, Namespace
from .listing import list_folders, plan_folders
from .types import (
    AccountResult,
    ConnectionTestResult,
    ErrorKind,
    FolderInfo,
    FolderPlan,
    FolderResult,
    FolderStateData,
    Mailbox,
    MessageError,
    MessageWarning,
    NotCopied,
    Outcome,
    Progress,
    ProgressCallback,
    Security,
    StateStore,
    StopCheck,
)

__all__ = [
    "AccountResult",
    "ConnectError",
    "ConnectionTestResult",
    "ErrorKind",
    "FolderInfo",
    "FolderPlan",
    "FolderResult",
    "FolderStateData",
    "Mailbox",
    "MessageError",
    "MessageWarning",
    "NotCopied",
    "Namespace",
    "Outcome",
    "Progress",
    "ProgressCallback",
    "Security",
    "StateStore",
    "StopCheck",
    "copy_account",
    "list_folders",
    "map_folders",
    "plan_folders",
    "test_connection",
    "tls_context",
]
