"""The per-endpoint connection cap: at most `Endpoint.max_connections` connections at once.

Every connection imapcopier opens to a server (copy jobs and connection tests, in every process
and on every machine) first leases one of the endpoint's slots: a row of ConnectionSlot claimed
with a conditional UPDATE. A lease expires, so the slots of a killed worker free themselves; a
copy job renews its leases with its heartbeat and releases them when it ends.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tasks.models import ConnectionSlot, Endpoint

# A held slot whose lease was not renewed for this long is free again. Copy jobs renew every few
# seconds; connection tests are short and take a lease long enough for their timeouts.
SLOT_LEASE_SECONDS = 90
TEST_SLOT_LEASE_SECONDS = 300


class SlotsImpossible(Exception):
    """More connections are asked for than the endpoint allows at all."""


class _NotEnough(Exception):
    pass


def account_run_holder(account_run_id: int, attempt: int) -> str:
    return f"ar:{account_run_id}:{attempt}"


def account_run_holder_prefix(account_run_id: int) -> str:
    return f"ar:{account_run_id}:"


def connection_test_holder() -> str:
    return f"test:{uuid.uuid4().hex}"


def _free(now: datetime) -> Q:
    return Q(holder="") | Q(expires_at__lt=now)


def _ensure_slots(endpoint_id: int, cap: int) -> None:
    have = ConnectionSlot.objects.filter(endpoint_id=endpoint_id, number__lt=cap).count()
    if have < cap:
        ConnectionSlot.objects.bulk_create(
            [ConnectionSlot(endpoint_id=endpoint_id, number=n) for n in range(cap)],
            ignore_conflicts=True,
        )


def try_acquire(
    needs: Mapping[int, int],
    holder: str,
    *,
    now: datetime,
    lease_seconds: int = SLOT_LEASE_SECONDS,
) -> bool:
    """Lease `needs[endpoint_id]` slots of each endpoint for `holder`, all or nothing.

    Returns False (holding nothing) when some endpoint has too few free slots right now. Raises
    SlotsImpossible when an endpoint's max_connections is below what is asked for.
    """
    needs = {eid: k for eid, k in needs.items() if k > 0}
    caps = dict(Endpoint.objects.filter(pk__in=needs).values_list("pk", "max_connections"))
    for eid, k in needs.items():
        if eid not in caps:
            raise Endpoint.DoesNotExist(f"endpoint {eid} does not exist")
        if k > caps[eid]:
            raise SlotsImpossible(
                f"{k} connections are needed at once but the server allows only {caps[eid]} (max connections)"
            )
    expires_at = now + timedelta(seconds=lease_seconds)
    try:
        with transaction.atomic():
            for eid in sorted(needs):
                free = ConnectionSlot.objects.filter(endpoint_id=eid, number__lt=caps[eid]).filter(_free(now))
                candidates = list(free.values_list("pk", flat=True))
                if len(candidates) < needs[eid]:
                    # Too few free: maybe the endpoint's slot rows are not all there yet (new endpoint,
                    # raised cap). Counting them before every lease cost a query per job.
                    _ensure_slots(eid, caps[eid])
                    candidates = list(free.values_list("pk", flat=True))
                got = 0
                while candidates and got < needs[eid]:
                    # The conditional UPDATE is the claim: of two processes racing for a slot, only
                    # one sees it still free (PostgreSQL re-checks the WHERE after the row lock). One
                    # statement for as many slots as are still needed; a slot lost to a race is
                    # made up from the next candidates.
                    take, candidates = candidates[: needs[eid] - got], candidates[needs[eid] - got :]
                    got += (
                        ConnectionSlot.objects.filter(pk__in=take)
                        .filter(_free(now))
                        .update(holder=holder, expires_at=expires_at)
                    )
                if got < needs[eid]:
                    raise _NotEnough
    except _NotEnough:
        return False
    return True


def acquire(
    needs: Mapping[int, int],
    holder: str,
    *,
    give_up: Callable[[], bool] = lambda: False,
    clock: Callable[[], datetime] = timezone.now,
    lease_seconds: int = SLOT_LEASE_SECONDS,
    poll_seconds: float = 1.0,
    timeout_seconds: float | None = None,
) -> bool:
    """Wait until the slots are leased (True), or until give_up() or the timeout (False)."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    while True:
        if try_acquire(needs, holder, now=clock(), lease_seconds=lease_seconds):
            return True
        if give_up() or (deadline is not None and time.monotonic() >= deadline):
            return False
        time.sleep(poll_seconds)


def renew(holder: str, *, now: datetime, lease_seconds: int = SLOT_LEASE_SECONDS) -> int:
    """Extend the leases `holder` still has; returns how many."""
    return ConnectionSlot.objects.filter(holder=holder).update(expires_at=now + timedelta(seconds=lease_seconds))


def release(holder: str) -> int:
    return ConnectionSlot.objects.filter(holder=holder).update(holder="", expires_at=None)


def release_account_run(account_run_id: int) -> int:
    """Free every slot of an account run, whatever its attempt (used by the reaper)."""
    return ConnectionSlot.objects.filter(holder__startswith=account_run_holder_prefix(account_run_id)).update(
        holder="", expires_at=None
    )


def in_use(endpoint_id: int, *, now: datetime) -> int:
    """How many of the endpoint's slots are leased right now."""
    return ConnectionSlot.objects.filter(endpoint_id=endpoint_id).exclude(_free(now)).count()
