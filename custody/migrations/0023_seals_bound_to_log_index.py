"""Each seal (custody.models.SEALS) now binds the log index of the signed entry that last wrote its
row, and log entries name the sealed row they write (LogEntry.subject, projection.subject_of), so
that a row and seal of an earlier moment, written back, are refused at use: the log holds a later
entry about the row.

Forwards: existing entries get their subject (the append-only guards are lifted for this UPDATE
only, and put back); each row still sealed the old way (under SECRET_KEY or a fallback) is bound to
the newest entry about it and sealed again the new way. A row put back in the database before this
migration cannot be told from a current one here (verify_log still compares it with the log). A row
whose old seal did not hold keeps it, and stays refused. Password hashes are bound to no entry
(none recorded a change until now: account.password_changed starts here).

The entries the second factor's checks read (account.second_factor_used and _failed,
account.recovery_codes_generated: projection._SUBJECTS) get their subject here too; a recovery sheet
made before stays in its old stored form (its entry says nothing of ``bound``).

Backwards: rows whose new seal holds are sealed the old way again; the columns go.
"""

import hmac
import json

from django.conf import settings
from django.db import migrations, models


def _secrets():
    return [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]


GRANT_FIELDS = ("username", "role", "is_active", "is_staff", "is_superuser", "second_factor")


# The seals as migrations 0015-0021 made them, frozen here.
def _old_credential(user, secret):
    from custody.models import seal

    return seal("custody.user.credential", [str(user.pk), user.password], secret)


def _old_grants(user, secret):
    from custody.models import seal

    return seal("custody.user.grants", [str(user.pk)] + [str(getattr(user, f)) for f in GRANT_FIELDS], secret)


def _old_membership(m, secret):
    from custody.models import seal

    return seal("custody.case.membership", [str(m.case_id), str(m.user_id)], secret)


def _old_token(token, secret):
    import datetime as dt

    from custody.models import seal

    revoked = "" if token.revoked_at is None else token.revoked_at.astimezone(dt.UTC).isoformat()
    return seal("custody.api.token", [token.digest, str(token.user_id), revoked], secret)


def _kinds(apps):
    from custody import models as m

    User = apps.get_model("custody", "User")
    Membership = apps.get_model("custody", "Membership")
    ApiToken = apps.get_model("custody", "ApiToken")
    return [
        (User, "credential_mac", "credential_log_index", _old_credential, m.credential_mac, m.CREDENTIAL_SEAL),
        (User, "grants_mac", "grants_log_index", _old_grants, m.grants_mac, m.GRANTS_SEAL),
        (Membership, "mac", "log_index", _old_membership, m.membership_mac, m.MEMBERSHIP_SEAL),
        (ApiToken, "mac", "log_index", _old_token, m.token_mac, m.TOKEN_SEAL),
    ]


def _holds(stored, seal_of, row) -> bool:
    stored = bytes(stored or b"")
    return any(hmac.compare_digest(stored, seal_of(row, secret)) for secret in _secrets())


def bind(apps, schema_editor):
    from custody import dbguard
    from custody.projection import _SUBJECTS, subject_of

    LogEntry = apps.get_model("custody", "LogEntry")
    latest = {}
    named = []
    for index, leaf in LogEntry.objects.filter(action__in=list(_SUBJECTS)).values_list("index", "leaf").iterator():
        try:
            subject = subject_of(json.loads(bytes(leaf)))
        except ValueError:
            subject = None
        if subject is not None:
            named.append((index, subject))
            latest[subject] = max(index, latest.get(subject, -1))
    connection = schema_editor.connection
    if named:
        dbguard.remove_update_delete_guards(connection)
        try:
            for index, subject in named:
                LogEntry.objects.filter(index=index).update(subject=subject)
        finally:
            dbguard.install_update_delete_guards(connection)
    for model, field, bound, old_seal, new_seal, kind in _kinds(apps):
        for row in model.objects.iterator():
            if _holds(getattr(row, field), old_seal, row):
                setattr(row, bound, latest.get(kind.subject(row)))
                model.objects.filter(pk=row.pk).update(
                    **{bound: getattr(row, bound), field: new_seal(row, settings.SECRET_KEY)}
                )


def unbind(apps, schema_editor):
    for model, field, bound, old_seal, new_seal, _ in _kinds(apps):
        for row in model.objects.iterator():
            if _holds(getattr(row, field), new_seal, row):
                model.objects.filter(pk=row.pk).update(**{field: old_seal(row, settings.SECRET_KEY)})


class Migration(migrations.Migration):
    dependencies = [("custody", "0022_totp_key_encrypted")]

    operations = [
        migrations.AddField(
            model_name="user",
            name="grants_log_index",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="user",
            name="credential_log_index",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="membership",
            name="log_index",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="log_index",
            field=models.BigIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="logentry",
            name="subject",
            field=models.CharField(blank=True, max_length=120, null=True),
        ),
        migrations.AddIndex(
            model_name="logentry",
            index=models.Index(fields=["subject", "index"], name="logentry_subject"),
        ),
        migrations.RunPython(bind, unbind),
    ]
