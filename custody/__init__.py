"""The custody app.

Importing the package imports nothing else, so its pure modules (signing,
merkle, verify) run with only Python and ``cryptography``: ``python -m
custody.verify`` works on a machine without Django. The Celery app is loaded
by the app config (``apps.py``) in Django processes, and by ``celery -A
custody`` (which finds ``custody.celery``) in workers.
"""
