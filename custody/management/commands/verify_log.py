import json
import sys

from django.core.management.base import BaseCommand, CommandError

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
        parser.add_argument(
            "--no-witnesses",
            action="store_true",
            help="do not ask the configured witnesses how large a tree they cosigned (offline check)",
        )
        parser.add_argument(
            "--trust-root",
            metavar="ROOT.json",
            help="the trust root you pinned (from GET /api/v1/trust-root/ at an earlier time); "
            "without it the server's first published root is the starting point",
        )

        parser.add_argument(
            "--workers",
            type=int,
            metavar="N",
            help="check entry signatures in N worker processes (0: in this one; default: one per CPU "
            "for a log of 20,000 entries or more)",
        )

    def handle(self, skip_blobs, quiet, trust_root, no_witnesses, workers=None, **options):
        if workers is not None and workers < 0:
            raise CommandError("--workers must be 0 or more")
        progress = None if quiet else (lambda text: self.stderr.write(f"... {text}"))
        pinned = None
        if trust_root:
            try:
                with open(trust_root, encoding="utf-8") as f:
                    pinned = json.load(f)
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read the trust root {trust_root}: {exc}") from None
        report = audit.verify(
            check_blobs=not skip_blobs,
            progress=progress,
            trust_root=pinned,
            ask_witnesses=not no_witnesses,
            workers=workers,
        )
        for note in report.notes:
            self.stdout.write(f"NOTE: {note}")
        self.stdout.write(
            f"{report.entries} entries, {report.nodes} tree nodes, {report.checkpoints} checkpoints, "
            f"{report.blobs} blobs, {report.receipts} receipts, {report.results} results, "
            f"{report.cosignatures} witness cosignatures, {report.timestamps} time-stamps checked"
        )
        if report.trust_root:
            self.stdout.write(
                f"trust root: {report.trust_root}" + ("" if pinned else " (not pinned: --trust-root)")
            )
        if report.ok:
            self.stdout.write(
                "OK: the log, its entry signatures, checkpoints, time-stamps, the trust root chain, "
                "every custody table, blobs, receipts and results are consistent"
            )
            return
        for problem in report.problems:
            self.stdout.write(f"PROBLEM: {problem}")
        self.stdout.write(f"FAILED: {len(report.problems)} problem(s)")
        sys.exit(1)
