from __future__ import annotations

import factory
from factory.django import DjangoModelFactory

from runs.models import AccountRun, FolderState, Run
from tasks.models import Account, Endpoint, Task


class EndpointFactory(DjangoModelFactory):
    class Meta:
        model = Endpoint

    label = factory.Sequence(lambda n: f"server {n}")
    host = "127.0.0.1"
    port = 993
    security = Endpoint.Security.SSL


class TaskFactory(DjangoModelFactory):
    class Meta:
        model = Task

    name = factory.Sequence(lambda n: f"task {n}")
    source = factory.SubFactory(EndpointFactory)
    destination = factory.SubFactory(EndpointFactory)


class AccountFactory(DjangoModelFactory):
    class Meta:
        model = Account

    task = factory.SubFactory(TaskFactory)
    source_user = factory.Sequence(lambda n: f"user{n}@source.test")
    source_password = factory.Sequence(lambda n: f"source-secret-{n}")
    destination_user = factory.Sequence(lambda n: f"user{n}@destination.test")
    destination_password = factory.Sequence(lambda n: f"destination-secret-{n}")

    class Params:
        tested = factory.Trait(
            source_test_status=Account.TestStatus.OK,
            destination_test_status=Account.TestStatus.OK,
        )


class RunFactory(DjangoModelFactory):
    class Meta:
        model = Run

    task = factory.SubFactory(TaskFactory)
    trigger = Run.Trigger.MANUAL
    status = Run.Status.DONE


class AccountRunFactory(DjangoModelFactory):
    class Meta:
        model = AccountRun

    run = factory.SubFactory(RunFactory)
    account = factory.SubFactory(AccountFactory, task=factory.SelfAttribute("..run.task"))


class FolderStateFactory(DjangoModelFactory):
    class Meta:
        model = FolderState

    account = factory.SubFactory(AccountFactory)
    source_folder = "INBOX"
    destination_folder = "INBOX"
    uidvalidity = 1
