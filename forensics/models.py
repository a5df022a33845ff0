"""Analyses and their derived artifacts. No logic here: state changes live in forensics/services.py."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Analysis(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    evidence = models.ForeignKey("custody.Evidence", on_delete=models.PROTECT, related_name="analyses")
    analyzer = models.CharField(max_length=100)
    analyzer_version = models.CharField(max_length=50)
    parameters = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField()
    request_log_index = models.BigIntegerField()
    # Set when a worker claims the run (conditional UPDATE queued -> running).
    started_at = models.DateTimeField(null=True, blank=True)
    # The running task touches this every few seconds; a stale one means the
    # worker died and the sweeper may re-queue the run.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    # When the run's task message was last handed to the broker. A broker
    # that lost its messages (Redis restarted without persistence) loses no
    # run: the sweeper sends a queued run again once this is older than
    # CUSTODY_ANALYSIS_RESEND_SECONDS (services.resend_queued).
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    envelope = models.JSONField(null=True, blank=True, help_text="DSSE envelope signed with the results key")
    statement_sha256 = models.CharField(max_length=64, blank=True)
    result_log_index = models.BigIntegerField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    publish_log_index = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["requested_at"]
        verbose_name_plural = "analyses"
        indexes = [models.Index(fields=["status", "started_at"])]

    def __str__(self) -> str:
        return f"{self.analyzer} on {self.evidence_id} ({self.status})"


class Artifact(models.Model):
    """A derived file (plot, ELA map...) stored as a content-addressed blob."""

    analysis = models.ForeignKey(Analysis, on_delete=models.PROTECT, related_name="artifacts")
    blob = models.ForeignKey("custody.Blob", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    media_type = models.CharField(max_length=100)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["analysis", "blob"], name="unique_artifact")]

    def __str__(self) -> str:
        return f"{self.name} ({self.blob_id[:12]})"
