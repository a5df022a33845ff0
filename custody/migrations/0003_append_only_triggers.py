from django.db import migrations


def install(apps, schema_editor):
    from custody import dbguard

    dbguard.install(schema_editor.connection)


def remove(apps, schema_editor):
    from custody import dbguard

    dbguard.remove(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("custody", "0002_log_head")]
    operations = [migrations.RunPython(install, remove)]
