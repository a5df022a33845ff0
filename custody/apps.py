from django.apps import AppConfig


class CustodyConfig(AppConfig):
    name = "custody"
    verbose_name = "Custody"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Bind shared tasks to the project's Celery app (broker from settings)
        # in every Django process that may enqueue work.
        from . import celery  # noqa: F401
