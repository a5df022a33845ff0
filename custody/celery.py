"""The Celery app. Broker from settings: filesystem under the data dir by default."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "custody.settings")
# Defence in depth: whatever a worker or beat process creates is its user's only. Files
# that matter get their modes set explicitly anyway (custody/storage.py,
# custody/apps.py, custody/keys.py, custody/tus.py).
os.umask(0o077)

app = Celery("custody")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_after_configure.connect
def _configure_broker(sender, **kwargs):
    # Read lazily: the filesystem transport needs its folders, which live
    # under CUSTODY_DATA_DIR and must exist before a worker polls them.
    from django.conf import settings

    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = settings.CELERY_BROKER_DIR
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        sender.conf.broker_transport_options = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            # Broadcast exchanges (remote control); the default is ./control
            # in the current directory.
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }


app.autodiscover_tasks()
