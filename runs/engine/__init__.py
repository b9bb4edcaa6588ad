"""The IMAP copy engine: plain Python, no Django. See types.py for the contract.

Public API:
    test_connection(mailbox) -> ConnectionTestResult            (connection_test.py)
    tls_context(verify_tls, ca_certificate="") -> ssl.SSLContext (connect.py: the one TLS rule, shared)
    list_folders(mailbox, with_counts=False) -> list[FolderInfo] (listing.py)
    plan_folders(source, destination, mapping) -> list[FolderPlan] (listing.py)
    map_folders(...) -> list[FolderPlan]  (folders.py: the pure mapping behind plan_folders)
    copy_account(source, destination, *, state, folder_mapping=None, on_progress=None,
                 should_stop=None, connections=2) -> AccountResult (account.py)

Inside: account.py (the run, the workers' supervision) uses planning.py (what to copy per folder)
and worker.py (copying units in batches; retries.py for second APPEND tries, isolation.py for a
message that breaks the connection), sharing work.py; identity.py matches messages across servers;
the wire is imap.py (Connection, FETCH parsing), connect.py (TLS, read-only guard, login) and
append.py (raw pipelined APPEND).
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
    TokenSource,
    TokenUnavailable,
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
    "TokenSource",
    "TokenUnavailable",
    "copy_account",
    "list_folders",
    "map_folders",
    "plan_folders",
    "test_connection",
    "tls_context",
]
