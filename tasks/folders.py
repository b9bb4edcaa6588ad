"""The folder-mapping overview: what the first account's source folders are and where each would go."""

from __future__ import annotations

from dataclasses import dataclass, field

from runs.engine import list_folders, plan_folders
from runs.engine.types import FolderInfo, FolderPlan
from tasks.models import Account, Task
from tasks.services import account_mailbox


@dataclass
class FolderRow:
    plan: FolderPlan
    info: FolderInfo | None


@dataclass
class FolderOverview:
    ok: bool
    error: str = ""
    plans: list[FolderPlan] = field(default_factory=list)
    infos: dict[str, FolderInfo] = field(default_factory=dict)

    @property
    def rows(self) -> list[FolderRow]:
        return [FolderRow(plan, self.infos.get(plan.source)) for plan in self.plans]

    @property
    def conflicts(self) -> list[FolderPlan]:
        return [plan for plan in self.plans if plan.conflict]

    @property
    def total_messages(self) -> int:
        return sum(i.messages or 0 for i in self.infos.values())

    @property
    def total_size(self) -> int:
        return sum(i.size or 0 for i in self.infos.values())


def folder_overview(task: Task, account: Account) -> FolderOverview:
    """List the account's source folders (with counts and sizes) and plan them onto the destination.

    Talks to both servers (outside the endpoints' connection slots: two short connections, like
    a login test); a failure to connect or log in comes back as `error`, in words.
    """
    source = account_mailbox(account, "source")
    destination = account_mailbox(account, "destination")
    try:
        source_folders = list_folders(source, with_counts=True)
    except Exception as exc:  # shown to the operator, never raised
        return FolderOverview(ok=False, error=f"Source: {exc}")
    try:
        plans = plan_folders(source, destination, task.folder_mapping)
    except Exception as exc:
        return FolderOverview(ok=False, error=f"Destination: {exc}")
    # INBOX first, then by name, so parents sit above their children.
    plans.sort(key=lambda p: (p.source.upper() != "INBOX", p.source.casefold()))
    return FolderOverview(ok=True, plans=plans, infos={f.name: f for f in source_folders})
