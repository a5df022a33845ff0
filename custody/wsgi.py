import os

from django.core.wsgi import get_wsgi_application

# Defence in depth: whatever this process creates is its user's only. Files
# that matter get their modes set explicitly anyway (custody/storage.py,
# custody/apps.py, custody/keys.py, custody/tus.py).
os.umask(0o077)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "custody.settings")
application = get_wsgi_application()
