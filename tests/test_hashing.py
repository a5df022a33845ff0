import hashlib
import os

import pytest

from custody.hashing import MultiHasher, hash_file, is_sha256_hex


def expected(data: bytes) -> dict[str, str]:
    return {name: hashlib.new(name, data).hexdigest() for name in ("sha256", "sha1", "md5")}


def test_empty_input_gives_the_empty_digests():
    hasher = MultiHasher()
    assert hasher.hexdigests() == expected(b"")
    assert hasher.hexdigests()["sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize(
    "sizes",
    [
        [3],  # small: stays inline
        [1 << 20] * 5,  # large: threads from the start
        [10, 100, 1 << 17, 7, 1 << 20, 1],  # small prefix handed over to the threads
    ],
)
def test_digests_match_hashlib_whatever_the_chunking(sizes):
    chunks = [os.urandom(n) for n in sizes]
    hasher = MultiHasher()
    for chunk in chunks:
        hasher.update(chunk)
    assert hasher.hexdigests() == expected(b"".join(chunks))
    assert hasher.size == sum(sizes)


@pytest.mark.parametrize("sizes", [[3, 5], [1 << 20, 1 << 20, 7], [10, 1 << 17, 1]])
def test_a_digest_so_far_is_of_the_bytes_fed_and_the_hasher_goes_on(sizes):
    """What a resumable upload seals at each offset: the SHA-256 of exactly the bytes before it."""
    chunks = [os.urandom(n) for n in sizes]
    hasher = MultiHasher()
    for i, chunk in enumerate(chunks):
        hasher.update(chunk)
        assert hasher.hexdigest_so_far("sha256") == expected(b"".join(chunks[: i + 1]))["sha256"]
    assert hasher.hexdigests() == expected(b"".join(chunks))
    assert hasher.hexdigest_so_far("md5") == expected(b"".join(chunks))["md5"]


def test_memoryview_chunks_are_copied_before_queueing():
    buf = bytearray(os.urandom(1 << 18))
    hasher = MultiHasher()
    hasher.update(memoryview(buf))
    original = bytes(buf)
    buf[:] = b"\0" * len(buf)  # the caller reuses its buffer at once
    assert hasher.hexdigests() == expected(original)


def test_update_after_finish_is_refused():
    hasher = MultiHasher()
    hasher.hexdigests()
    with pytest.raises(RuntimeError):
        hasher.update(b"late")


def test_hash_file(tmp_path):
    data = os.urandom(3 << 20)
    path = tmp_path / "f"
    path.write_bytes(data)
    assert hash_file(path) == (expected(data), len(data))


def test_is_sha256_hex():
    assert is_sha256_hex("a" * 64)
    assert not is_sha256_hex("g" * 64)
    assert not is_sha256_hex("a" * 63)
