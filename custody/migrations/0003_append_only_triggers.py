from django.db import migrations


def install(apps, schema_editor):
    from custody import dbguard

    # Only the guards this migration first installed; later ones come with
    # later migrations (0006: INSERT over an existing row on SQLite).
    dbguard.install_update_delete_guards(schema_editor.connection)


def remove(apps, schema_editor):
    from custody import dbguard

    dbguard.remove_update_delete_guards(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("custody", "0002_log_head")]
    operations = [migrations.RunPython(install, remove)]
