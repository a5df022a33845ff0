from django.apps import AppConfig


class CustodyConfig(AppConfig):
    name = "custody"
    verbose_name = "Custody"
    default_auto_field = "django.db.models.BigAutoField"
