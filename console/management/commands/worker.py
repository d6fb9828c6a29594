from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from console.jobs.worker import run_forever


class Command(BaseCommand):
    help = (
        "Run background jobs (webhook deliveries, sandbox timeouts, upload expiry) until "
        "interrupted. Any number of workers may share one database (docs/jobs.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--threads", type=int, default=4, help="Jobs this process runs at once (default 4)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        threads = options["threads"]
        if not 1 <= threads <= 64:
            self.stderr.write("--threads must be from 1 to 64")
            raise SystemExit(2)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        self.stdout.write(f"worker running ({threads} threads)")
        self.stdout.flush()
        run_forever(stop, threads=threads)
