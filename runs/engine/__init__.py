"""The IMAP copy engine: plain Python, no Django. See types.py for the contract.

Public API (implemented in copier.py, imap.py, folders.py):
    test_connection(mailbox) -> ConnectionTestResult
    list_folders(mailbox, with_counts=False) -> list[FolderInfo]
    plan_folders(source, destination, mapping) -> list[FolderPlan]
    copy_account(source, destination, *, state, folder_mapping=None, on_progress=None,
                 should_stop=None, connections=2) -> AccountResult
"""
