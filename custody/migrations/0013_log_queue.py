from django.db import migrations, models


def install(apps, schema_editor):
    from custody import dbguard

    # PostgreSQL: the queue refuses UPDATE, and DELETE of a row whose entry the log does not hold.
    dbguard.install_queue_guards(schema_editor.connection)


def remove(apps, schema_editor):
    from custody import dbguard

    dbguard.remove_queue_guards(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("custody", "0012_resumable_staged")]

    operations = [
        migrations.CreateModel(
            name="LogQueue",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("body", models.BinaryField()),
                ("action", models.CharField(max_length=64)),
                ("actor_id", models.BigIntegerField(null=True)),
                ("case_id", models.UUIDField(null=True)),
                ("evidence_id", models.UUIDField(null=True)),
                ("mac", models.BinaryField()),
                ("queued_at", models.DateTimeField()),
            ],
        ),
        migrations.AddField(
            model_name="logentry",
            name="queue_id",
            field=models.BigIntegerField(db_index=True, null=True),
        ),
        migrations.RunPython(install, remove),
    ]
