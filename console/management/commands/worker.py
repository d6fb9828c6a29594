from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from console.worker import run_forever


class Command(BaseCommand):
    help = "Run background jobs (sandbox timeouts, reconciliation) until interrupted."

    def handle(self, *args, **options):
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        self.stdout.write("worker running")
        run_forever(stop)
