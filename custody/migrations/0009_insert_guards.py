from django.db import migrations


def install(apps, schema_editor):
    from custody import dbguard

    # SQLite: refuse INSERT OR REPLACE / REPLACE INTO / upserts over an
    # existing log row (the replaced row's DELETE fires no trigger).
    dbguard.install_insert_guards(schema_editor.connection)


def remove(apps, schema_editor):
    from custody import dbguard

    dbguard.remove_insert_guards(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("custody", "0008_trust_root")]
    operations = [migrations.RunPython(install, remove)]
