# ConnectionSlot moved here from the runs app. The table (runs_connectionslot, made by runs.0002) is kept
# as it is: this only adds the model to the tasks app's state.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('tasks', '0001_initial'),
        ('runs', '0004_connectionslot_moves_to_tasks'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ConnectionSlot',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('number', models.PositiveSmallIntegerField()),
                        ('holder', models.CharField(blank=True, max_length=100)),
                        ('expires_at', models.DateTimeField(blank=True, null=True)),
                        ('endpoint', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='connection_slots', to='tasks.endpoint')),
                    ],
                    options={
                        'db_table': 'runs_connectionslot',
                        'ordering': ['endpoint', 'number'],
                        'indexes': [models.Index(fields=['holder'], name='connection_slot_holder')],
                        'constraints': [models.UniqueConstraint(fields=('endpoint', 'number'), name='connection_slot_unique')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
