from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tasks import slots
from tasks.models import ConnectionSlot
from tests.support.factories import EndpointFactory

pytestmark = pytest.mark.django_db


def test_slots_are_leased_up_to_the_endpoint_cap():
    endpoint = EndpointFactory(max_connections=2)
    now = timezone.now()
    assert slots.try_acquire({endpoint.pk: 1}, "a", now=now)
    assert slots.try_acquire({endpoint.pk: 1}, "b", now=now)
    assert not slots.try_acquire({endpoint.pk: 1}, "c", now=now)
    assert slots.in_use(endpoint.pk, now=now) == 2
    assert slots.release("a") == 1
    assert slots.try_acquire({endpoint.pk: 1}, "c", now=now)


def test_acquire_is_all_or_nothing_across_endpoints():
    source = EndpointFactory(max_connections=2)
    destination = EndpointFactory(max_connections=2)
    now = timezone.now()
    assert slots.try_acquire({destination.pk: 1}, "other", now=now)
    assert not slots.try_acquire({source.pk: 2, destination.pk: 2}, "job", now=now)
    assert not ConnectionSlot.objects.filter(holder="job").exists()
    assert slots.try_acquire({source.pk: 2, destination.pk: 1}, "job", now=now)
    assert ConnectionSlot.objects.filter(holder="job").count() == 3


def test_an_expired_lease_frees_the_slot_and_renewal_keeps_it():
    endpoint = EndpointFactory(max_connections=1)
    now = timezone.now()
    assert slots.try_acquire({endpoint.pk: 1}, "dead", now=now, lease_seconds=30)
    assert not slots.try_acquire({endpoint.pk: 1}, "new", now=now + timedelta(seconds=29))
    assert slots.renew("dead", now=now + timedelta(seconds=20), lease_seconds=30) == 1
    assert not slots.try_acquire({endpoint.pk: 1}, "new", now=now + timedelta(seconds=40))
    assert slots.try_acquire({endpoint.pk: 1}, "new", now=now + timedelta(seconds=51))
    assert slots.renew("dead", now=now + timedelta(seconds=52)) == 0


def test_asking_for_more_than_the_cap_is_impossible():
    endpoint = EndpointFactory(max_connections=2)
    with pytest.raises(slots.SlotsImpossible, match="allows only 2"):
        slots.try_acquire({endpoint.pk: 3}, "x", now=timezone.now())


def test_a_lowered_cap_is_respected():
    endpoint = EndpointFactory(max_connections=3)
    now = timezone.now()
    assert slots.try_acquire({endpoint.pk: 1}, "a", now=now)
    slots.release("a")
    endpoint.max_connections = 1
    endpoint.save()
    assert slots.try_acquire({endpoint.pk: 1}, "b", now=now)
    assert not slots.try_acquire({endpoint.pk: 1}, "c", now=now)


def test_acquire_waits_and_gives_up_when_told():
    endpoint = EndpointFactory(max_connections=1)
    assert slots.try_acquire({endpoint.pk: 1}, "busy", now=timezone.now())
    asked = []

    def give_up() -> bool:
        asked.append(1)
        return len(asked) >= 3

    assert not slots.acquire({endpoint.pk: 1}, "waiter", give_up=give_up, poll_seconds=0.01)
    assert len(asked) == 3
    assert not slots.acquire({endpoint.pk: 1}, "waiter", poll_seconds=0.01, timeout_seconds=0.05)
    slots.release("busy")
    assert slots.acquire({endpoint.pk: 1}, "waiter", poll_seconds=0.01, timeout_seconds=1)


def test_release_of_an_account_run_frees_every_attempt():
    endpoint = EndpointFactory(max_connections=4)
    now = timezone.now()
    slots.try_acquire({endpoint.pk: 2}, slots.account_run_holder(7, 1), now=now)
    slots.try_acquire({endpoint.pk: 1}, slots.account_run_holder(7, 2), now=now)
    slots.try_acquire({endpoint.pk: 1}, slots.account_run_holder(70, 1), now=now)
    assert slots.release_account_run(7) == 3
    assert slots.in_use(endpoint.pk, now=now) == 1
