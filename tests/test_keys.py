"""Signing key files: durable before the database names them."""

from custody import keys


def test_a_new_key_file_and_its_directory_are_durable(tmp_path, settings, fsynced):
    settings.CUSTODY_KEY_DIR = tmp_path / "data" / "keys"
    keyid, _ = keys.generate_key_file()
    path = keys.key_path(keyid)
    assert path in fsynced  # the bytes
    assert path.parent in fsynced  # the file's entry in keys/
    assert tmp_path / "data" in fsynced and tmp_path in fsynced  # keys/ and data/ in their parents


def test_a_generated_passphrase_file_is_durable(tmp_path, settings, fsynced):
    settings.CUSTODY_KEY_PASSPHRASE = ""
    settings.CUSTODY_KEY_PASSPHRASE_FALLBACK_FILE = tmp_path / "keys" / "passphrase"
    phrase = keys.passphrase()
    assert phrase and keys.passphrase() == phrase
    path = settings.CUSTODY_KEY_PASSPHRASE_FALLBACK_FILE
    assert path in fsynced and path.parent in fsynced and tmp_path in fsynced
