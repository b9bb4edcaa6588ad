"""How long the web requests that start work take: "Run now" and "Test all" on N accounts.

Not a test: nothing here asserts a speed. Each request goes through the whole Django stack (test client,
middleware, session login) on a private SQLite database with the ORM broker, the default installation.
Usage, from the repository root: `.venv/bin/python -m bench.start_latency --accounts 1000`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="imapcopier-bench-")
    os.environ.update(IMAPCOPIER_DATA_DIR=data, DEBUG="1", DATABASE_URL=f"sqlite:///{data}/bench.sqlite3")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="imapcopier.settings", LOG_LEVEL="WARNING", LOGIN_LOCKOUT="0", ALLOWED_HOSTS="testserver"
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client
    from django_q.models import OrmQ

    from runs.models import Run
    from tasks.models import Account, Endpoint, Task

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("bench", password="bench-password-1")
    client = Client()
    client.force_login(user)
    source = Endpoint.objects.create(label="source", host="127.0.0.1", port=9, security="plain")
    destination = Endpoint.objects.create(label="destination", host="127.0.0.1", port=9, security="plain")
    ok = Account.TestStatus.OK
    run_seconds, test_seconds = [], []
    for n in range(args.repeat):
        task = Task.objects.create(name=f"bench {n}", source=source, destination=destination)
        Account.objects.bulk_create(
            Account(
                task=task,
                source_user=f"user{i}@source",
                source_password="x",
                destination_user=f"user{i}@destination",
                destination_password="x",
                source_test_status=ok,
                destination_test_status=ok,
            )
            for i in range(args.accounts)
        )
        started = time.perf_counter()
        response = client.post(f"/tasks/{task.pk}/run/")
        run_seconds.append(time.perf_counter() - started)
        assert response.status_code == 302 and Run.objects.filter(task=task).exists(), response.status_code
        started = time.perf_counter()
        response = client.post(f"/tasks/{task.pk}/accounts/test/")
        test_seconds.append(time.perf_counter() - started)
        assert response.status_code == 302, response.status_code
        OrmQ.objects.all().delete()
    print(f"{args.accounts} accounts, SQLite + ORM broker, {args.repeat} times, median (min-max):")
    for name, values in (("Run now", run_seconds), ("Test all", test_seconds)):
        print(f"  {name:8} {statistics.median(values):7.3f} s ({min(values):.3f}-{max(values):.3f})")


if __name__ == "__main__":
    main()
