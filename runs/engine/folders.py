"""Folder listing and the folder mapping (a pure function, tested without a server)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .imap import Connection, Namespace
from .types import FolderInfo, FolderPlan

# Special-use attributes that name a real, single folder worth mapping onto its counterpart.
# \All and \Flagged are virtual views on most servers, so they follow the path rule.
MAPPED_SPECIAL_USE = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")
_SPECIAL_USE = {
    a.lower(): a
    for a in (
        "\\All",
        "\\Archive",
        "\\Drafts",
        "\\Flagged",
        "\\Junk",
        "\\Sent",
        "\\Trash",
    )
}
# Characters a folder name cannot carry in a quoted string on any server: control characters.
# "%" and "*" are legal in names (they are wildcards only in LIST patterns, RFC 9051 §6.3.9) and
# every name is sent quoted; a server that refuses one says so when CREATE is refused, in its words.
_FORBIDDEN = {chr(c) for c in range(32)} | {"\x7f"}


def folder_infos(connection: Connection) -> list[FolderInfo]:
    """LIST every folder with delimiter, attributes and special-use, names decoded from modified UTF-7."""
    return _infos(connection.list())


def folder_infos_with_status(
    connection: Connection, items: Sequence[str]
) -> tuple[list[FolderInfo], dict[str, dict[str, int]]]:
    """folder_infos() and, where the server has LIST-STATUS (RFC 5819), the STATUS `items` of every
    selectable folder from the same LIST (Connection.list_status: {} without it, then ask STATUS)."""
    listed, statuses = connection.list_status(items)
    return _infos(listed), statuses


def _infos(listed: Iterable[tuple[tuple[str, ...], str | None, str]]) -> list[FolderInfo]:
    infos = []
    for flags, delimiter, name in listed:
        lowered = {f.lower() for f in flags}
        special = next((_SPECIAL_USE[f] for f in lowered if f in _SPECIAL_USE), None)
        selectable = "\\noselect" not in lowered and "\\nonexistent" not in lowered
        infos.append(
            FolderInfo(
                name=name,
                delimiter=delimiter,
                flags=flags,
                special_use=special,
                selectable=selectable,
            )
        )
    return infos


def with_counts(connection: Connection, infos: list[FolderInfo]) -> list[FolderInfo]:
    """Fill messages (and size where the server has STATUS=SIZE) for the selectable folders."""
    items = ["MESSAGES"]
    if connection.has("STATUS=SIZE"):
        items.append("SIZE")
    for info in infos:
        if not info.selectable:
            continue
        status = connection.status(info.name, items)
        info.messages = status.get("MESSAGES")
        info.size = status.get("SIZE")
    return infos


@dataclass
class _Target:
    plan: FolderPlan
    key: str


def is_inbox(name: str) -> bool:
    return name.upper() == "INBOX"


def path_components(name: str, namespace: Namespace) -> list[str]:
    """The folder's path below the personal namespace, split at the source delimiter."""
    prefix = namespace.prefix
    if prefix and name.upper().startswith(prefix.upper()) and len(name) > len(prefix):
        name = name[len(prefix) :]
    if not namespace.delimiter:
        return [name]
    return name.split(namespace.delimiter)


def translate_path(name: str, source: Namespace, destination: Namespace) -> tuple[str, str]:
    """Source name → destination name by the path rule; returns (name, problem or "").

    The destination delimiter inside a source name component is replaced by the source delimiter
    (imapsync's rule: "a/b" on a '.' server becomes "a.b" on a '/' server), except that "/" is
    never introduced (file-based stores refuse it): "x.y" on a '/' server becomes "x_y" on a '.'
    server. The mapping is deterministic; a clash it causes is reported as a conflict.
    """
    if is_inbox(name):
        return "INBOX", ""
    parts = path_components(name, source)
    dest_delim = destination.delimiter or "/"
    src_delim = source.delimiter or ""
    fixed = []
    for part in parts:
        if dest_delim in part:
            # "/" is refused inside names by most file-based stores (Dovecot Maildir++, Courier).
            replacement = src_delim if src_delim not in ("", "/", dest_delim) else "_"
            part = part.replace(dest_delim, replacement)
        fixed.append(part)
    prefix = destination.prefix
    # "INBOX/Sub" (a child of INBOX) onto an "INBOX." personal prefix is "INBOX.Sub", not "INBOX.INBOX.Sub".
    if prefix and len(fixed) > 1 and is_inbox(fixed[0]) and is_inbox(prefix.rstrip(dest_delim)):
        fixed = fixed[1:]
    target = prefix + dest_delim.join(fixed)
    problem = ""
    if any(not part for part in fixed):
        problem = f"the name {name!r} has an empty level, which the destination cannot hold"
    elif any(c in _FORBIDDEN for c in target):
        problem = f"the name {name!r} contains characters the destination cannot hold"
    return target, problem


def renamed_note(name: str, target: str, source: Namespace, destination: Namespace) -> str:
    """Why translate_path() had to change a level of `name` (the destination's delimiter inside it), or ""."""
    dest_delim = destination.delimiter or "/"
    if is_inbox(name) or dest_delim == (source.delimiter or ""):
        return ""
    if not any(dest_delim in part for part in path_components(name, source)):
        return ""
    return f"copied as {target!r}: {dest_delim!r} separates folder levels on the destination, so it cannot be part of a name"


def map_folders(
    source_folders: Sequence[FolderInfo],
    source_namespace: Namespace,
    destination_folders: Sequence[FolderInfo],
    destination_namespace: Namespace,
    mapping: dict[str, str] | None = None,
) -> list[FolderPlan]:
    """Decide where each source folder goes: explicit → special-use → same path.

    An explicit mapping to "" skips the folder. Conflicts are reported on the plans, never merged
    silently: two source folders onto one destination folder, two destinations differing only by
    case (they merge on case-insensitive servers), and names the destination cannot hold.
    """
    mapping = mapping or {}
    dest_special: dict[str, str] = {}
    for info in destination_folders:
        if info.special_use and info.special_use not in dest_special and info.selectable:
            dest_special[info.special_use] = info.name
    plans: list[FolderPlan] = []
    for info in source_folders:
        if info.name in mapping:
            target = mapping[info.name]
            if target == "":
                plans.append(FolderPlan(info.name, None, "skip", selectable=info.selectable))
            else:
                plans.append(FolderPlan(info.name, target, "explicit", selectable=info.selectable))
            continue
        if info.special_use in MAPPED_SPECIAL_USE and info.special_use in dest_special and not is_inbox(info.name):
            plans.append(
                FolderPlan(
                    info.name,
                    dest_special[info.special_use],
                    "special-use",
                    selectable=info.selectable,
                )
            )
            continue
        target, problem = translate_path(info.name, source_namespace, destination_namespace)
        note = "" if problem else renamed_note(info.name, target, source_namespace, destination_namespace)
        plans.append(FolderPlan(info.name, target, "path", conflict=problem, selectable=info.selectable, note=note))
    _mark_collisions(plans)
    return plans


def _mark_collisions(plans: Iterable[FolderPlan]) -> None:
    exact: dict[str, FolderPlan] = {}
    folded: dict[str, FolderPlan] = {}
    for plan in plans:
        if plan.destination is None or plan.conflict:
            continue
        key = "INBOX" if is_inbox(plan.destination) else plan.destination
        if key in exact:
            first = exact[key]
            # Hierarchy-only parents (\Noselect) may share a name with the folder they stand for.
            if not plan.selectable or not first.selectable:
                continue
            plan.conflict = f"{first.source!r} and {plan.source!r} would both be copied into {plan.destination!r}"
            continue
        exact[key] = plan
        low = key.lower()
        if low in folded and folded[low].destination != plan.destination:
            other = folded[low]
            plan.conflict = (
                f"{plan.destination!r} differs from {other.destination!r} (from {other.source!r}) only by "
                "case; they would merge on a case-insensitive server: map one of them explicitly"
            )
            continue
        folded[low] = plan
