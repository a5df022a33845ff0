"""REST token authentication against hashed tokens (``Authorization: Token <token>``)."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import ApiToken


class HashedTokenAuthentication(authentication.TokenAuthentication):
    keyword = "Token"

    def authenticate_credentials(self, key: str):
        from .services import token_digest

        try:
            token = ApiToken.objects.select_related("user").get(digest=token_digest(key))
        except ApiToken.DoesNotExist:
            raise exceptions.AuthenticationFailed("invalid token") from None
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed("token revoked")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("user inactive")
        now = timezone.now()
        # Write last use at most once a minute: a busy script must not turn
        # every GET into a write.
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token
