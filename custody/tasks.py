"""Celery tasks of the custody app: thin wrappers around services."""

from celery import shared_task

from . import services
from .models import Evidence


@shared_task(name="custody.check_fixity", acks_late=True)
def check_fixity(evidence_id: str) -> bool:
    """Re-hash one evidence item's stored bytes and log the result."""
    evidence = Evidence.objects.select_related("blob", "case").get(pk=evidence_id)
    return services.check_fixity(evidence=evidence)


@shared_task(name="custody.check_fixity_all", acks_late=True)
def check_fixity_all() -> int:
    """Queue a fixity check of every evidence item (the periodic schedule calls this)."""
    ids = list(Evidence.objects.values_list("id", flat=True))
    for evidence_id in ids:
        check_fixity.delay(str(evidence_id))
    return len(ids)


@shared_task(name="custody.sign_checkpoint", acks_late=True)
def sign_checkpoint() -> int:
    """Sign a checkpoint for the current tree if it grew (the periodic schedule calls this).

    Queued entries go into the log first: if every appender died between its
    COMMIT and the sequencing, this is where their entries get indexed.
    """
    from . import log

    log.drain()
    return log.latest_checkpoint().size


@shared_task(name="custody.sweep_expired_uploads", acks_late=True)
def sweep_expired_uploads() -> int:
    """Remove unfinished resumable uploads past their expiry, and temporary multipart uploads
    left by a web process that died mid-upload (the periodic schedule calls this)."""
    from . import tus, uploads

    return tus.sweep_expired() + uploads.sweep_abandoned()


# Back-off between retries when a TSA is down: 1, 2, 4, 8, 16 minutes. After
# that the task gives up; the next beat run starts again on the newest checkpoint.
TSA_RETRY_DELAYS = (60, 120, 240, 480, 960)


@shared_task(
    name="custody.timestamp_checkpoints",
    bind=True,
    acks_late=True,
    max_retries=len(TSA_RETRY_DELAYS),
)
def timestamp_checkpoints(self) -> int:
    """Time-stamp the newest checkpoint at each configured TSA (the periodic schedule calls this).

    A TSA that fails is retried with back-off; the others' tokens are kept.
    Returns the number of tokens stored by this run.
    """
    from . import timestamps

    run = timestamps.stamp_newest_checkpoint()
    if run.failed:
        delay = TSA_RETRY_DELAYS[min(self.request.retries, len(TSA_RETRY_DELAYS) - 1)]
        raise self.retry(countdown=delay, exc=timestamps.TSAError("; ".join(run.failed.values())))
    return len(run.stamped)


@shared_task(
    name="custody.witness_checkpoints", bind=True, acks_late=True, max_retries=3, default_retry_delay=20
)
def witness_checkpoints(self) -> dict:
    """Ask the witnesses to cosign the newest checkpoint (the periodic schedule calls this).

    Retried soon when a witness could not be reached; a refusal is not
    retried (it is reported, and the next scheduled run tries again).
    """
    from celery.exceptions import MaxRetriesExceededError

    from . import witnessing

    outcomes = witnessing.witness_checkpoints()
    summary = {o.witness.name: o.state for o in outcomes}
    if any(o.transient for o in outcomes):
        try:
            raise self.retry()
        except MaxRetriesExceededError:
            pass  # the beat schedule will try again; finality waits, intake does not
    return summary
