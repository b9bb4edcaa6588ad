"""How long "Run now" takes to answer for a task of many accounts (issue 12: under a second for 1,000).

    .venv/bin/python -m bench.enqueue                          # 1,000 accounts, SQLite in a temp dir
    .venv/bin/python -m bench.enqueue --accounts 5000 --repeat 5
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/imapcopier_bench .venv/bin/python -m bench.enqueue

Each repeat POSTs the task page's "Run now" through Django's test client (the whole request: the claim,
one AccountRun per account, the commit and the enqueueing after it, with the real django-q2 ORM broker)
and reports the wall time; then the run is closed and the broker's queue emptied for the next repeat.
Also shows how many jobs the request left in the broker (the fan-out job takes the rest).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    data = tempfile.mkdtemp(prefix="imapcopier-bench-enqueue-")
    os.environ.setdefault("IMAPCOPIER_DATA_DIR", data)
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imapcopier.settings")
    os.environ["REDIS_URL"] = ""  # the ORM broker, as bin/start runs it
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse
    from django_q.models import OrmQ

    from runs.models import AccountRun, Run
    from tasks.models import Account, Endpoint, Task

    setup_test_environment()
    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    source = Endpoint.objects.create(label="bench source", host="127.0.0.1", port=993)
    destination = Endpoint.objects.create(label="bench destination", host="127.0.0.1", port=993)
    task = Task.objects.create(name="bench", source=source, destination=destination)
    ok = Account.TestStatus.OK
    Account.objects.bulk_create(
        Account(
            task=task,
            source_user=f"user{i}@old.example",
            source_password="p",
            destination_user=f"user{i}@new.example",
            destination_password="p",
            source_test_status=ok,
            destination_test_status=ok,
        )
        for i in range(args.accounts)
    )
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-password-1")
    client = Client()
    client.force_login(user)
    url = reverse("runs:start", args=[task.pk])
    timings = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        response = client.post(url)
        timings.append(time.perf_counter() - started)
        assert response.status_code in (200, 302), response.status_code
        run = Run.objects.get(task=task, status=Run.Status.RUNNING)
        assert AccountRun.objects.filter(run=run).count() == args.accounts
        queued = OrmQ.objects.count()
        Run.objects.filter(pk=run.pk).update(status=Run.Status.DONE)
        AccountRun.objects.filter(run=run).update(status=AccountRun.Status.DONE)
        Task.objects.filter(pk=task.pk).update(status=Task.Status.DONE)
        OrmQ.objects.all().delete()
    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    print(
        f"Run now, {args.accounts:,} accounts, {engine}: median {statistics.median(timings):.3f} s, "
        f"max {max(timings):.3f} s over {args.repeat} requests; jobs in the broker after the request: {queued}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
