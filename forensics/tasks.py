"""Celery tasks for analyses: fetch by id, hand over to the services."""

from celery import shared_task

from . import services


@shared_task(name="forensics.run_analysis", acks_late=True, reject_on_worker_lost=True)
def run_analysis(analysis_id: str) -> str:
    return services.run_analysis(analysis_id, worker=services.worker_name())


@shared_task(name="forensics.sweep_stale", acks_late=True)
def sweep_stale() -> list[str]:
    """Re-queue runs whose worker died, and re-send queued runs whose message was lost."""
    return services.sweep_stale() + services.resend_queued()
