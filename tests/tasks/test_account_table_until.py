"""The polled account table reads its `until` parameter strictly (issue 15, finding 6): a malformed or
zone-less time is a 400 with the reason, never a 500."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.support.factories import AccountFactory, TaskFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("until", ["yesterday", "2026-13-01T00:00:00+00:00", "2026-12-01T10:00:00", "<script>"])
def test_a_malformed_or_zone_less_until_is_400(admin_client, until):
    task = TaskFactory()
    response = admin_client.get(reverse("tasks:account_table", args=[task.pk]), {"until": until})
    assert response.status_code == 400
    assert b"ISO 8601 time with a time zone" in response.content
    assert b"<script>" not in response.content


def test_a_zoned_until_polls_while_tests_are_pending(admin_client):
    task = TaskFactory()
    AccountFactory(task=task)  # never tested
    until = timezone.now().isoformat()
    response = admin_client.get(reverse("tasks:account_table", args=[task.pk]), {"until": until})
    assert response.status_code == 200
    assert b'hx-trigger="every 2s"' in response.content
