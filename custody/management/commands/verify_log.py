import sys

from django.core.management.base import BaseCommand

from custody import audit


class Command(BaseCommand):
    help = (
        "Verify the custody log against the database: recompute the Merkle tree from the stored "
        "leaves, check stored nodes, checkpoint signatures, roots and consistency, re-hash every "
        "blob and check every intake receipt. Exits 1 and names each problem found."
    )

    def add_arguments(self, parser):
        parser.add_argument("--skip-blobs", action="store_true", help="do not re-hash blob files")
        parser.add_argument("--quiet", action="store_true")

    def handle(self, skip_blobs, quiet, **options):
        progress = None if quiet else (lambda text: self.stderr.write(f"... {text}"))
        report = audit.verify(check_blobs=not skip_blobs, progress=progress)
        self.stdout.write(
            f"{report.entries} entries, {report.nodes} tree nodes, {report.checkpoints} checkpoints, "
            f"{report.blobs} blobs, {report.receipts} receipts, {report.results} results, {report.timestamps} time-stamps checked"
        )
        if report.ok:
            self.stdout.write("OK: the log, checkpoints, blobs and receipts are consistent")
            return
        for problem in report.problems:
            self.stdout.write(f"PROBLEM: {problem}")
        self.stdout.write(f"FAILED: {len(report.problems)} problem(s)")
        sys.exit(1)
