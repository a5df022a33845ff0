#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    # Defence in depth: whatever this process creates is its user's only. Files
    # that matter get their modes set explicitly anyway (custody/storage.py,
    # custody/apps.py, custody/keys.py, custody/tus.py).
    os.umask(0o077)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "custody.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
