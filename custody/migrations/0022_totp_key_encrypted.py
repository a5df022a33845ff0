"""TOTP keys are stored encrypted under SECRET_KEY (custody.models.seal_totp_key), through a proxy
of django-otp's device model that decrypts them (SealedTOTPDevice).

Existing keys, stored in clear by django-otp until now, are encrypted here as they stand;
backwards, they are decrypted again.
"""

from django.db import migrations


def encrypt_keys(apps, schema_editor):
    from custody.models import seal_totp_key

    TOTPDevice = apps.get_model("otp_totp", "TOTPDevice")
    for device in TOTPDevice.objects.iterator():
        sealed = seal_totp_key(bytes.fromhex(device.key), device)
        TOTPDevice.objects.filter(pk=device.pk).update(key=sealed)


def decrypt_keys(apps, schema_editor):
    from custody.models import TotpKeyRefused, open_totp_key

    TOTPDevice = apps.get_model("otp_totp", "TOTPDevice")
    for device in TOTPDevice.objects.iterator():
        try:
            raw, _ = open_totp_key(device)
        except TotpKeyRefused:
            continue  # never the server's: left as it is, it gives no codes either way
        TOTPDevice.objects.filter(pk=device.pk).update(key=raw.hex())


class Migration(migrations.Migration):
    dependencies = [
        ("custody", "0021_apitoken_mac_covers_revocation"),
        ("otp_totp", "0003_add_timestamps"),
    ]

    operations = [
        migrations.CreateModel(
            name="SealedTOTPDevice",
            fields=[],
            options={"proxy": True, "indexes": [], "constraints": []},
            bases=("otp_totp.totpdevice",),
        ),
        migrations.RunPython(encrypt_keys, decrypt_keys),
    ]
