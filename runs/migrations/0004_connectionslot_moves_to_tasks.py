# The ConnectionSlot model moved to the tasks app (the connection tests there take slots too). Its table
# stays where it is: this only removes the model from the runs app's state; tasks.0002 adds it there.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('runs', '0003_folder_state_pending'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name='ConnectionSlot')],
            database_operations=[],
        ),
    ]
