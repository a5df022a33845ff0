"""Database sessions stored under a digest of their key (``SESSION_ENGINE``).

Django's database backend keeps the session key, which is the cookie, as the
row's primary key: whoever can read the ``django_session`` table (a database
administrator, a backup, a replica) can copy a signed-in administrator's key
into a cookie and be that administrator. Here the row is named by the first
160 bits of the key's SHA-256 instead: the table no longer holds anything a
browser can present, and a cookie is looked up by its digest. (A forged row
also needs data signed with ``SECRET_KEY``, as with Django's own backend.)

Sessions made by Django's backend before this one was configured are not
found: their users sign in again.
"""

from __future__ import annotations

import hashlib
import logging

from django.contrib.sessions.backends import db
from django.core.exceptions import SuspiciousOperation
from django.utils import timezone


def stored_key(session_key: str) -> str:
    """The name of a session's row: 40 hex digits of its key's SHA-256 (the column's width)."""
    return hashlib.sha256(session_key.encode("utf-8")).hexdigest()[:40]


class SessionStore(db.SessionStore):
    def _row(self):
        if not self.session_key:
            return None
        try:
            return self.model.objects.get(
                session_key=stored_key(self.session_key), expire_date__gt=timezone.now()
            )
        except (self.model.DoesNotExist, SuspiciousOperation) as exc:
            if isinstance(exc, SuspiciousOperation):
                logging.getLogger(f"django.security.{exc.__class__.__name__}").warning(str(exc))
            self._session_key = None
            return None

    def _get_session_from_db(self):
        return self._row()

    async def _aget_session_from_db(self):
        from asgiref.sync import sync_to_async

        return await sync_to_async(self._row)()

    def exists(self, session_key):
        return self.model.objects.filter(session_key=stored_key(session_key)).exists()

    async def aexists(self, session_key):
        return await self.model.objects.filter(session_key=stored_key(session_key)).aexists()

    def create_model_instance(self, data):
        row = super().create_model_instance(data)
        row.session_key = stored_key(row.session_key)
        return row

    async def acreate_model_instance(self, data):
        row = await super().acreate_model_instance(data)
        row.session_key = stored_key(row.session_key)
        return row

    def delete(self, session_key=None):
        session_key = session_key if session_key is not None else self.session_key
        if session_key is not None:
            self.model.objects.filter(session_key=stored_key(session_key)).delete()

    async def adelete(self, session_key=None):
        session_key = session_key if session_key is not None else self.session_key
        if session_key is not None:
            await self.model.objects.filter(session_key=stored_key(session_key)).adelete()
