from django.db import migrations


def create_head(apps, schema_editor):
    # The row every log append locks; it must exist before the first append.
    apps.get_model("custody", "LogHead").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("custody", "0001_initial")]
    operations = [migrations.RunPython(create_head, migrations.RunPython.noop)]
