"""Whole-log verification (``manage.py verify_log``): trust nothing the database says.

Recomputes the Merkle tree from the stored leaf bytes, checks every stored
node the proofs are built from, every checkpoint's signature and root, the
consistency between successive checkpoints, the tree head, every blob's
digests, and every intake receipt. Streams rows, so memory stays flat at
millions of entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.db import DatabaseError, connection, transaction

from . import entrysigs, merkle, projection, signing
from .models import Blob, Checkpoint, LogEntry, LogHead, TreeNode
from .replay import Replay
from .storage import BlobStoreUnavailable, blob_store, hash_stream, sha256_stream

BATCH = 5000
# From this many entries on, entry signatures are checked in worker processes
# (below it, starting them costs more than it saves).
PARALLEL_FROM = 20_000


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    entries: int = 0
    nodes: int = 0
    checkpoints: int = 0
    blobs: int = 0
    receipts: int = 0
    results: int = 0
    timestamps: int = 0
    cosignatures: int = 0
    trust_root: str = ""

    def problem(self, text: str) -> None:
        self.problems.append(text)

    @property
    def ok(self) -> bool:
        return not self.problems


def _stream(queryset, *fields) -> Iterator[tuple]:
    return queryset.values_list(*fields).iterator(chunk_size=BATCH)


def verify(
    check_blobs: bool = True,
    progress: Callable[[str], None] | None = None,
    trust_root: dict | None = None,
    ask_witnesses: bool = True,
    workers: int | None = None,
    chunk: int = entrysigs.CHUNK,
) -> Report:
    """Check everything; ``trust_root`` is a root envelope the auditor pinned (else version 1 is taken).

    Entry signatures are checked by ``workers`` processes, ``chunk`` entries
    at a time (0: in this process; None: one per CPU from PARALLEL_FROM
    entries on, below that in this process).
    """
    report = Report()
    say = progress or (lambda text: None)
    # Entries of committed actions still queued (PostgreSQL) go into the log
    # first, so the log checked is every committed action's.
    from . import log

    try:
        queued = log.drain()
    except DatabaseError as exc:  # a read-only standby or role: check the log as it stands
        queued = 0
        report.notes.append(f"queued entries could not be indexed first, and are not checked ({exc})")
    if queued:
        report.notes.append(f"{queued} queued entries were indexed before the check")
    # One consistent view of the log while appends go on (PostgreSQL); the
    # blobs are re-hashed afterwards, outside that transaction.
    with _snapshot():
        _verify_records(report, say, trust_root, workers, chunk)
        if connection.vendor == "postgresql":
            # Rows put in the queue behind the app's back (custody/log.py):
            # consistent with the log, which recorded them, but worth a look.
            rejected = LogEntry.objects.filter(action="log.queue_rejected").values_list("index", "leaf")
            for index, leaf in rejected.iterator():
                reason = json.loads(bytes(leaf)).get("reason")
                report.notes.append(f"entry {index}: a row in the log queue was rejected: {reason}")
    # Outside the snapshot: the witnesses are compared with the log as it is now.
    if ask_witnesses:
        say("asking the witnesses how large a tree they have cosigned")
        _ask_witnesses(report)
    if check_blobs:
        say("re-hashing blobs")
        _verify_blobs(report)
    return report


@contextlib.contextmanager
def _snapshot():
    """Run the checks on one consistent view of the log while appends go on."""
    if connection.in_atomic_block:
        yield  # the caller's transaction already fixes the view
    elif connection.vendor == "postgresql":
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
    elif connection.vendor == "sqlite":
        # Django's atomic() would BEGIN IMMEDIATE and hold off every appender
        # for the whole check. A deferred read transaction in WAL mode sees
        # the database as of its first read and lets writers go on.
        with connection.cursor() as cursor:
            cursor.execute("BEGIN DEFERRED")
            try:
                yield
            finally:
                cursor.execute("COMMIT")  # read only: ends the snapshot
    else:
        yield


def _verify_records(report: Report, say, trust_root: dict | None, workers: int | None, chunk: int) -> None:
    from django.conf import settings

    if workers is None:
        head = LogHead.objects.filter(pk=1).values_list("size", flat=True).first() or 0
        workers = entrysigs.default_workers() if head >= PARALLEL_FROM else 0
    replay = Replay(
        settings.CUSTODY_LOG_ORIGIN,
        report.problem,
        directory=str(settings.FILE_UPLOAD_TEMP_DIR),
        signatures=entrysigs.Checker(report.problem, workers, chunk),
    )
    try:
        _verify_log_and_tables(report, say, replay)
        say("checking the trust root chain")
        _verify_trust_roots(report, replay, trust_root)
    finally:
        replay.close()


def _verify_trust_roots(report: Report, replay: Replay, pinned: dict | None) -> None:
    """The published roots chain from the pinned one, and the newest names exactly the log's keys."""
    from . import trustroot
    from .models import TrustRoot

    envelopes = [row.envelope for row in TrustRoot.objects.order_by("version")]
    if not envelopes:
        if replay.key_ids():
            report.problem("no trust root has been published, yet the log has signing keys")
        return
    try:
        start = trustroot.load_pinned(pinned or envelopes[0])
        if pinned is not None:
            same = [e for e in envelopes if trustroot.fingerprint(e) == start.fingerprint]
            if not same:
                report.problem(
                    f"the pinned trust root (version {start.version}, {start.fingerprint[:16]}) is not one "
                    "this server published: its history differs from what you pinned"
                )
                return
        newest, _ = trustroot.follow(start, envelopes)
    except (trustroot.TrustRootError, ValueError) as exc:
        report.problem(f"trust root chain: {exc}")
        return
    report.trust_root = f"version {newest.version} ({newest.fingerprint})"
    in_root = {keyid: (k["purpose"], k["public_key_pem"]) for keyid, k in newest.keys().items()}
    in_log = replay.key_ids()
    for keyid, (purpose, pem) in in_log.items():
        if keyid not in in_root:
            report.problem(f"key {keyid[:16]} ({purpose}) is in the log but not in the trust root")
        elif in_root[keyid] != (purpose, pem):
            report.problem(f"key {keyid[:16]}: the trust root states another purpose or key than the log")
    for keyid, (purpose, _) in in_root.items():
        if keyid not in in_log:
            report.problem(
                f"key {keyid[:16]} ({purpose}) is in the trust root but no key.added entry adds it"
            )


class _Float(Exception):
    pass


def _refuse_float(text: str):
    raise _Float


# json.loads, but stopping at the first float (or NaN, Infinity): canonical_json refuses them.
_LEAF_DECODER = json.JSONDecoder(parse_float=_refuse_float, parse_constant=_refuse_float)
# signing.canonical_json's serialiser, made once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _parse_leaf(leaf: bytes) -> tuple[object, str | None]:
    """(json.loads(leaf), the leaf as text if it holds no float), raising as json.loads does.

    The quick way when json.loads would read the bytes as UTF-8 (a leaf that
    opens '{"': no byte-order mark, no UTF-16/32) and they are strict UTF-8;
    json.loads itself otherwise, so every odd leaf meets the same errors.
    """
    if leaf[:2] == b'{"':
        try:
            text = leaf.decode()
            return _LEAF_DECODER.decode(text), text
        except (UnicodeDecodeError, _Float):
            pass
    return json.loads(leaf), None


def _leaf_rows() -> Iterator[tuple]:
    """(index, leaf, leaf hash, action, time as format_time spells it, actor id, case id, evidence id,
    signature, subject) of every entry in index order: bytes, str and int as the checks compare them."""
    if connection.vendor == "postgresql":
        # Raw rows off a server-side cursor: no model instances, no per-row
        # converters; the server spells the time and ids (to_char of the
        # stored instant in UTC to the microsecond is what format_time gives).
        sql = (
            "SELECT index, leaf, leaf_hash, action, "
            "to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
            "actor_id, case_id::text, evidence_id::text, signature, subject FROM custody_logentry ORDER BY index"
        )
        yield from _raw_stream(sql)
        return
    rows = _stream(
        LogEntry.objects.order_by("index"),
        "index",
        "leaf",
        "leaf_hash",
        "action",
        "time",
        "actor_id",
        "case_id",
        "evidence_id",
        "signature",
        "subject",
    )
    for index, leaf, stored_hash, action, time, actor_id, case_id, evidence_id, signature, subject in rows:
        yield (
            index,
            bytes(leaf),
            bytes(stored_hash),
            action,
            projection.format_time(time),
            actor_id,
            str(case_id) if case_id is not None else None,
            str(evidence_id) if evidence_id is not None else None,
            bytes(signature),
            subject,
        )


def _raw_stream(sql: str, params: tuple = ()) -> Iterator[tuple]:
    """Rows of a raw query, BATCH at a time (a server-side cursor on PostgreSQL)."""
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(BATCH):
            yield from rows


def _verify_log_and_tables(report: Report, say, replay: Replay) -> None:
    # Checkpoint sizes are walked in step with the leaves and the roots kept
    # in the scratch store: a year of one checkpoint a minute is half a
    # million rows, which must not sit in memory.
    sizes = _stream(Checkpoint.objects.order_by("size"), "size")
    next_size = next(sizes, (None,))[0]

    # 1. Leaves: dense indexes, exact canonical bytes, stored leaf hashes.
    say("recomputing the tree from the leaves")
    frontier: list[bytes] = []
    expected = 0
    sha256 = hashlib.sha256
    for (
        index,
        leaf,
        stored_hash,
        action,
        time,
        actor_id,
        case_id,
        evidence_id,
        signature,
        subject,
    ) in _leaf_rows():
        if index != expected:
            report.problem(f"log indexes jump from {expected - 1} to {index}: entries missing or inserted")
            # Keep hashing what is there: the roots will not match the checkpoints.
        expected = index + 1
        leaf_hash = sha256(b"\x00" + leaf).digest()  # merkle.leaf_hash
        if stored_hash != leaf_hash:
            report.problem(f"entry {index}: stored leaf hash does not match its leaf bytes")
        try:
            entry, text = _parse_leaf(leaf)
            if entry.get("index") != index:
                report.problem(f"entry {index}: its leaf says index {entry.get('index')}")
            # The same test as signing.canonical_json(entry) != leaf, which is
            # asked only when the quick one (no floats were parsed, so none to
            # refuse) does not settle it.
            if (text is None or _CANONICAL.encode(entry) != text) and signing.canonical_json(entry) != leaf:
                report.problem(f"entry {index}: leaf is not canonical JSON")
            columns = {
                "action": action,
                "time": time,
                "actor": actor_id,
                "case": case_id,
                "evidence": evidence_id,
                "signature": signature,
                "subject": subject,
            }
            replay.feed(index, entry, leaf_hash, columns)
        except (ValueError, TypeError) as exc:
            report.problem(f"entry {index}: leaf is not valid JSON ({exc})")
        # merkle.append_to_frontier, without its checks of what is built right here.
        size = report.entries
        while size & 1:
            leaf_hash = sha256(b"\x01" + frontier.pop() + leaf_hash).digest()
            size >>= 1
        frontier.append(leaf_hash)
        report.entries += 1
        while next_size is not None and next_size <= report.entries:
            if next_size == report.entries:
                replay.keep_root(next_size, merkle.root_from_frontier(frontier), time)
            next_size = next(sizes, (None,))[0]
    # The signatures still being checked by the worker processes.
    replay.signatures.finish()
    root = merkle.root_from_frontier(frontier)

    # 2. The tree head the appenders continue from.
    head = LogHead.objects.get(pk=1)
    if head.size != report.entries:
        report.problem(f"tree head says {head.size} entries, the table holds {report.entries}")
    elif (bytes(head.root) or merkle.EMPTY_ROOT) != root:
        report.problem("tree head root does not match the root recomputed from the leaves")
    elif bytes(head.frontier) != b"".join(frontier):
        # The next append builds its nodes, root and checkpoint from the frontier.
        report.problem("tree head frontier does not match the one recomputed from the leaves")

    # 3. Stored subtree hashes, level by level, each from the level below.
    say("checking stored tree nodes")
    _verify_nodes(report)

    # 4. Checkpoints: signature by a log key, root as recomputed, consistency.
    say("checking checkpoints")
    # Log keys as the log announced them (key.added entries), never from the table alone.
    vkeys = replay.log_verifier_keys()
    previous = None
    for checkpoint in Checkpoint.objects.order_by("size").iterator(chunk_size=BATCH):
        report.checkpoints += 1
        label = f"checkpoint at size {checkpoint.size}"
        text = None
        for vkey in vkeys:
            try:
                text = signing.verify_note(checkpoint.note, vkey)
                break
            except ValueError:
                continue
        if text is None:
            report.problem(f"{label}: signature does not verify with any log key")
            continue
        lines = text.split("\n")
        try:
            size, note_root = int(lines[1]), signing.b64decode(lines[2])
        except (IndexError, ValueError):
            report.problem(f"{label}: malformed checkpoint body")
            continue
        if size != checkpoint.size or note_root != bytes(checkpoint.root):
            report.problem(f"{label}: signed body does not match the stored size/root")
        recomputed, newest = replay.root_at(size)
        if newest is not None and checkpoint.created_at < newest:
            report.problem(
                f"{label}: created_at {projection.format_time(checkpoint.created_at)} is before the newest "
                f"entry it covers ({projection.format_time(newest)})"
            )
        if recomputed is None:
            report.problem(f"{label}: the log has only {report.entries} entries")
        elif recomputed != note_root:
            report.problem(f"{label}: signed root differs from the root recomputed from the leaves")
        if previous is not None and recomputed is not None and previous[0] > 0:
            from . import log

            try:
                proof = log.consistency_proof(previous[0], size)
                if not merkle.verify_consistency(previous[0], size, previous[1], note_root, proof):
                    report.problem(f"{label}: not consistent with the checkpoint at size {previous[0]}")
            except (LookupError, ValueError, KeyError) as exc:
                report.problem(f"{label}: no consistency proof from size {previous[0]} ({exc})")
        previous = (size, note_root)

    # 5. Witnesses: every stored cosignature verifies; a witness that refused the log is a problem.
    say("checking witness cosignatures")
    _verify_witnesses(report)

    # 5b. RFC 3161 time-stamps: each token over its checkpoint's body, chaining to a configured TSA CA.
    say("checking time-stamps")
    _verify_timestamps(report)

    # 5c. Credentials: every password hash is one the server set (its HMAC under SECRET_KEY).
    say("checking that every password hash was set by the server")
    _verify_credentials(report)

    # 5d. Resumable uploads: each one's progress is as the server sealed it.
    say("checking that every resumable upload's progress was recorded by the server")
    _verify_uploads(report)

    # 6. Every custody table against the state the log implies.
    say("comparing every table with the state the log implies")
    replay.compare()
    report.receipts = replay.receipts
    report.results = replay.results


def _ask_witnesses(report: Report) -> None:
    """What only an outside memory can tell: a log smaller than what a witness cosigned was rolled
    back; a checkpoint a witness cosigned must still be here, with that witness's cosignature."""
    from . import log, witnessing
    from .models import Checkpoint, Cosignature

    witnesses = witnessing.configured_witnesses()
    if not witnesses:
        return
    checkpoint = log.latest_checkpoint()
    for witness in witnesses:
        try:
            size = witnessing.witnessed_size(witness, checkpoint)
        except (witnessing.Unreachable, witnessing.Refused) as exc:
            report.notes.append(f"witness {witness.name} could not be asked ({exc})")
            continue
        if size is None:
            continue  # it had cosigned nothing of this log
        head, _ = log.tree_head()
        if size > head:
            report.problem(
                f"witness {witness.name} has cosigned a tree of {size} entries; this log holds only {head}: "
                "the newest entries were rolled back (ROLLBACK)"
            )
        elif not Checkpoint.objects.filter(size=size).exists():
            report.problem(
                f"witness {witness.name} has cosigned the checkpoint at size {size}; no checkpoint at size "
                f"{size} is stored: it was deleted"
            )
        elif not Cosignature.objects.filter(checkpoint_id=size, witness_vkey=witness.vkey).exists():
            report.problem(
                f"witness {witness.name} has cosigned the checkpoint at size {size}; its cosignature of it is "
                "not stored: deleted (the checkpoint no longer counts as final), unless the server stopped "
                "between the witness's answer and storing it, which the next witnessing round repairs"
            )


def _verify_witnesses(report: Report) -> None:
    from django.conf import settings

    from . import cosign
    from .models import Cosignature, TrustRoot, WitnessStatus

    # Witness keys come from the settings and the trust roots, never from the row itself.
    known = {vkey for _, vkey in settings.CUSTODY_WITNESSES}
    for root in TrustRoot.objects.all():
        doc = json.loads(signing.b64decode(root.envelope["payload"]))
        known |= {w["vkey"] for w in doc.get("witnesses") or []}
    rows = Cosignature.objects.select_related("checkpoint").order_by("checkpoint_id", "witness_name")
    for row in rows.iterator(chunk_size=1000):
        report.cosignatures += 1
        label = f"cosignature by {row.witness_name} of checkpoint {row.checkpoint_id}"
        if row.witness_vkey not in known:
            report.problem(f"{label}: by a key that no configured witness or trust root names")
            continue
        try:
            body, _ = cosign.split_note(row.checkpoint.note)
            timestamp = cosign.verify(body, row.line, row.witness_vkey)
        except ValueError as exc:
            report.problem(f"{label}: {exc}")
            continue
        if int(row.signed_at.timestamp()) != timestamp:
            report.problem(f"{label}: signed_at says {row.signed_at}, the cosignature says {timestamp}")
    for status in WitnessStatus.objects.filter(state=WitnessStatus.State.REFUSED):
        report.problem(
            f"witness {status.witness_name} REFUSED the log's checkpoint (it had cosigned "
            f"{status.last_cosigned_size} entries): {status.last_error} -- a rollback or a fork of the log"
        )


def _verify_credentials(report: Report) -> None:
    """Password hashes, grants, memberships and API tokens each carry the server's HMAC
    (``models.SEALS``): a row written or changed in the database by anyone else is named here, as
    the server refuses it at each use. (Memberships and tokens are custody facts too: the replay
    compares their rows with the log as well.)"""
    from .models import SEALS, SealedTOTPDevice, all_current

    for kind in SEALS:
        for row in kind.model.objects.order_by("pk").iterator():
            if not kind.intact(row):
                report.problem(f"{kind.label(row)}: {kind.broken}")
            elif not all_current((kind, row)):
                subject, bound = kind.claim(row)
                report.problem(
                    f"{kind.label(row)}: an earlier state written back with its seal (the seal binds log "
                    f"entry {bound}, the log holds a later entry about {subject}): refused at use"
                )
    for device in SealedTOTPDevice.objects.order_by("pk").iterator():
        if not device.key_intact():
            report.problem(
                f"TOTP device {device.pk} of user {device.user_id}: key not stored by the server for this "
                "account (it does not decrypt under SECRET_KEY): it gives no codes"
            )


def _verify_uploads(report: Report) -> None:
    """A resumable upload's offset, the SHA-256 of the bytes it counts, its staged pieces and the
    item it became are not custody facts (not in the log until the last byte), but the server
    seals them each time it records them: a row changed in the database shows here (and is
    refused at once when used: the client is told to start a new upload)."""
    from .models import ResumableUpload, upload_progress_intact

    for upload in ResumableUpload.objects.order_by("pk").iterator():
        if upload_progress_intact(upload):
            continue
        if upload.progress_mac is None:
            report.problem(
                f"resumable upload {upload.pk} (user {upload.created_by_id}): progress without the "
                "server's seal (under way at the upgrade, its partial file could not be checked): refused"
            )
        else:
            report.problem(
                f"resumable upload {upload.pk} (user {upload.created_by_id}): offset {upload.offset}, "
                f"its digest, staged pieces or item {upload.evidence_id or '(none)'} not recorded by the "
                "server (their HMAC does not match): refused, nothing of it becomes evidence"
            )


def _verify_timestamps(report: Report) -> None:
    from . import timestamps
    from .models import Timestamp

    rows = Timestamp.objects.select_related("checkpoint").order_by("checkpoint_id", "tsa_url")
    ca_pem = timestamps.configured_ca_pem()
    for row in rows.iterator(chunk_size=1000):
        report.timestamps += 1
        label = f"time-stamp by {row.tsa_url} of checkpoint {row.checkpoint_id}"
        if not ca_pem:
            report.problem(f"{label}: no TSA certificate is configured (CUSTODY_TSA_CA_FILES) to check it")
            continue
        try:
            gen_time = timestamps.verify_token(
                bytes(row.token), timestamps.checkpoint_body(row.checkpoint.note), ca_pem
            )
        except ValueError as exc:
            report.problem(f"{label}: does not verify ({exc})")
            continue
        if gen_time != row.gen_time:
            report.problem(f"{label}: the token says {gen_time}, the table says {row.gen_time}")


def _verify_nodes(report: Report) -> None:
    """Each stored level against the pairs of the level below (leaf hashes for level 1)."""
    level = 1
    while level < 64:
        expected_count = report.entries >> level
        if expected_count == 0 and not TreeNode.objects.filter(level=level).exists():
            return
        index = connection.ops.quote_name("index")
        nodes = f"SELECT {index}, hash FROM custody_treenode WHERE level = %s ORDER BY {index}"  # noqa: S608
        below = (
            _raw_stream(f"SELECT {index}, leaf_hash FROM custody_logentry ORDER BY {index}")  # noqa: S608
            if level == 1
            else _raw_stream(nodes, (level - 1,))
        )
        computed = _pairs(below)
        stored = _raw_stream(nodes, (level,))
        c, s = next(computed, None), next(stored, None)
        while c is not None or s is not None:
            if s is None or (c is not None and c[0] < s[0]):
                report.problem(f"tree node {level}/{c[0]} is missing")
                c = next(computed, None)
            elif c is None or s[0] < c[0]:
                report.problem(f"tree node {level}/{s[0]} should not exist")
                s = next(stored, None)
            else:
                report.nodes += 1
                if bytes(s[1]) != c[1]:
                    report.problem(f"tree node {level}/{s[0]} does not match its children")
                c, s = next(computed, None), next(stored, None)
        level += 1


def _pairs(rows) -> Iterator[tuple[int, bytes]]:
    """Combine consecutive (index, hash) rows of one level into the level above."""
    left = None
    for index, h in rows:
        if index % 2 == 0:
            left = (index, bytes(h))
        elif left is not None and left[0] == index - 1:
            yield index // 2, merkle.node_hash(left[1], bytes(h))
            left = None


def _verify_blobs(report: Report) -> None:
    store = blob_store()
    for sha256, sha1, md5, size in _stream(Blob.objects.order_by("sha256"), "sha256", "sha1", "md5", "size"):
        report.blobs += 1
        try:
            digests, actual_size = hash_stream(store.open(sha256))
        except FileNotFoundError:
            report.problem(f"blob {sha256}: file is missing")
            continue
        except BlobStoreUnavailable as exc:
            report.problem(f"blob {sha256}: store unavailable, not checked ({exc})")
            continue
        if (digests["sha256"], digests["sha1"], digests["md5"], actual_size) != (sha256, sha1, md5, size):
            report.problem(f"blob {sha256}: content no longer matches its recorded digests")
    # Signed statements are blobs named by their SHA-256, with no Blob row:
    # public ones (named by their announcements) and internal result
    # statements (rebuild_state reads them). Checked as strictly.
    for leaf in LogEntry.objects.filter(action="result.announced").values_list("leaf", flat=True).iterator():
        sha256 = (json.loads(bytes(leaf)).get("details") or {}).get("public_statement_sha256")
        if sha256:
            _verify_named_blob(report, store, sha256, f"public statement blob {sha256}")
    from forensics.models import Analysis

    rows = Analysis.objects.exclude(statement_sha256="").order_by("pk").values_list("pk", "statement_sha256")
    for pk, sha256 in rows.iterator(chunk_size=BATCH):
        _verify_named_blob(report, store, sha256, f"statement blob {sha256} of analysis {pk}")


def _verify_named_blob(report: Report, store, sha256: str, label: str) -> None:
    report.blobs += 1
    try:
        actual = sha256_stream(store.open(sha256))
    except FileNotFoundError:
        report.problem(f"{label}: file is missing")
        return
    except BlobStoreUnavailable as exc:
        report.problem(f"{label}: store unavailable, not checked ({exc})")
        return
    if actual != sha256:
        report.problem(f"{label}: content no longer matches its name")
