"""REST token authentication against hashed tokens (``Authorization: Token <token>``), and the
password check for accounts whose credential the server sealed."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import CREDENTIAL_SEAL, GRANTS_SEAL, TOKEN_SEAL, ApiToken, all_current

logger = logging.getLogger(__name__)


class HashedTokenAuthentication(authentication.TokenAuthentication):
    keyword = "Token"

    def authenticate_credentials(self, key: str):
        from .services import token_digest

        try:
            token = ApiToken.objects.select_related("user").get(digest=token_digest(key))
        except ApiToken.DoesNotExist:
            raise exceptions.AuthenticationFailed("invalid token") from None
        if not token.seal_intact():
            # Written into the database, or moved to another account, by someone other than
            # the server: the same answer as an unknown token, the reason in the server's log.
            logger.error("API token %s… refused: its row was not made by the server", token.prefix)
            raise exceptions.AuthenticationFailed("invalid token")
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("token revoked")
        if not token.user.grants_intact():
            _refuse_grants(token.user)
            raise exceptions.AuthenticationFailed("user inactive")
        # Both seals hold; are they the newest? A row and seal of an earlier moment written back
        # (a revoked token made live, an account's grants of before its deactivation) hold too, but
        # the log has a later entry about the row. One indexed query for both.
        if not all_current((TOKEN_SEAL, token), (GRANTS_SEAL, token.user)):
            logger.error(
                "API token %s… of user %s refused: the token or account row is an earlier state written "
                "back (the log holds a later entry about it)",
                token.prefix,
                token.user_id,
            )
            raise exceptions.AuthenticationFailed("invalid token")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("user inactive")
        now = timezone.now()
        # Write last use at most once a minute: a busy script must not turn
        # every GET into a write.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token


class SealedModelBackend(ModelBackend):
    """Django's username and password check, for accounts whose credential and grants the server set.

    A password hash written into the database by anyone but the server (its
    HMAC, ``User.credential_mac``, no longer matches) lets nobody in: the
    seal is checked before the password, so Django's re-hash of an outdated
    hash on login cannot renew it for a hash the database was given. Nor does
    an account whose name, role or flags were changed there (``grants_mac``):
    not at login, not for a session already open (``get_user``), not by token.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        try:
            user = get_user_model()._default_manager.get_by_natural_key(username)
        except get_user_model().DoesNotExist:
            return super().authenticate(request, username=username, password=password, **kwargs)
        if not user.credential_intact():
            logger.error(
                "login as %s refused: the account's password hash was not set by the server", username
            )
            get_user_model()().set_password(password)  # the hasher's time, as for a wrong password
            return None
        if not user.grants_intact():
            _refuse_grants(user)
            get_user_model()().set_password(password)
            return None
        if not all_current((CREDENTIAL_SEAL, user), (GRANTS_SEAL, user)):
            # Hash or grants of an earlier moment written back with their seals (a password changed
            # since, an account deactivated or given a second factor since): one indexed query.
            logger.error(
                "login as %s refused: its password hash or grants are an earlier state written back (the "
                "log holds a later entry about them)",
                username,
            )
            get_user_model()().set_password(password)
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)

    def get_user(self, user_id):
        """The signed-in user of a session, unless what the account may do was changed behind the server."""
        user = super().get_user(user_id)
        if user is not None and not user.grants_current():
            _refuse_grants(user)
            return None  # an anonymous request: the session no longer opens anything
        return user


def _refuse_grants(user) -> None:
    logger.error(
        "user %s (%s) refused: its name, role or flags were not written by the server (their HMAC does not match)",
        user.pk,
        user.get_username(),
    )
