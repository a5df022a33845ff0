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
    """Sign a checkpoint for the current tree if it grew (the periodic schedule calls this)."""
    from . import log

    return log.latest_checkpoint().size


@shared_task(name="custody.sweep_expired_uploads", acks_late=True)
def sweep_expired_uploads() -> int:
    """Remove unfinished resumable uploads past their expiry (the periodic schedule calls this)."""
    from . import tus

    return tus.sweep_expired()


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
