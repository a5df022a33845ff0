from django.apps import AppConfig


class ForensicsConfig(AppConfig):
    name = "forensics"
    verbose_name = "Forensic analyses"
