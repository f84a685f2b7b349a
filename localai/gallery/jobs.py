"""Gallery jobs: installs and deletions run by a small pool of worker threads, each with a
status readable at once and as it moves (LocalAI's ``/models/jobs/<uuid>`` fields)."""

from __future__ import annotations

import logging
import threading
import time
import uuid as uuid_mod
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from localai.errors import LocalAIError, TooManyRequests
from localai.gallery.install import Progress
from localai.gallery.sources import Cancelled

log = logging.getLogger("localai.gallery")

MAX_PENDING = 64
KEEP_FINISHED = 256


def human_size(n: int | None) -> str:
    """Bytes as LocalAI shows them ("12.3 MB"); "" when unknown."""
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


class Job(Progress):
    """One gallery operation and its status; the worker reports into it, requests read it."""

    def __init__(self, element: str, *, deletion: bool = False) -> None:
        self.uuid = str(uuid_mod.uuid4())
        self.element = element
        self.deletion = deletion
        self.cancel_event = threading.Event()
        self.created = time.time()
        self._lock = threading.Lock()
        self._message = "queued"
        self._file_name = ""
        self._total: int | None = None
        self._downloaded = 0
        self._error: str | None = None
        self._processed = False
        self._cancelled = False
        self._result: str | None = None

    # -- Progress (called by the worker)
    def message(self, text: str) -> None:
        with self._lock:
            self._message = text

    def file(self, name: str, total: int | None) -> None:
        with self._lock:
            self._file_name, self._total, self._downloaded = name, total, 0

    def advance(self, n: int) -> None:
        with self._lock:
            self._downloaded += n

    # -- lifecycle
    def finish(self, result: str | None = None, error: BaseException | None = None) -> None:
        with self._lock:
            self._processed = True
            if isinstance(error, Cancelled) or (error is not None and self.cancel_event.is_set()):
                self._cancelled, self._message, self._error = True, "cancelled", "cancelled"
            elif error is not None:
                self._error = str(error) if isinstance(error, LocalAIError) else \
                    f"{error.__class__.__name__}: {error}"
                self._message = f"error: {self._error}"
            else:
                self._result = result
                self._message = "completed"

    @property
    def processed(self) -> bool:
        with self._lock:
            return self._processed

    def cancel(self) -> bool:
        """Ask the job to stop; False when it had already finished."""
        with self._lock:
            if self._processed:
                return False
        self.cancel_event.set()
        return True

    def snapshot(self) -> dict:
        with self._lock:
            total, done = self._total, self._downloaded
            if self._processed and self._error is None:
                progress = 100.0
            elif total:
                progress = round(min(100.0, 100.0 * done / total), 2)
            else:
                progress = 0.0
            return {
                "uuid": self.uuid,
                "deletion": self.deletion,
                "file_name": self._file_name,
                "error": self._error,
                "processed": self._processed,
                "message": self._message,
                "progress": progress,
                "file_size": human_size(total),
                "downloaded_size": human_size(done) if self._file_name else "",
                "current_bytes": done,
                "total_bytes": total,
                "gallery_element_name": self.element,
                "cancelled": self._cancelled,
                "cancellable": not self._processed,
                "installed": self._result,
            }


class JobQueue:
    """A bounded pool of gallery workers: at most ``workers`` jobs run at once, at most
    MAX_PENDING wait; finished jobs stay readable (the newest KEEP_FINISHED)."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="gallery")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, job: Job, work: Callable[[Job], str | None]) -> Job:
        with self._lock:
            waiting = sum(1 for j in self._jobs.values() if not j.processed)
            if waiting >= MAX_PENDING:
                raise TooManyRequests(f"{waiting} gallery jobs are queued or running; try again later.",
                                      retry_after=10)
            self._jobs[job.uuid] = job
            self._forget_old()
        self._pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Job], str | None]) -> None:
        if job.cancel_event.is_set():
            job.finish(error=Cancelled("cancelled"))
            return
        job.message("processing")
        try:
            result = work(job)
        except BaseException as exc:  # a job's failure is its status, never the worker's death
            if not isinstance(exc, (LocalAIError, OSError)):
                log.exception("gallery job %s (%s) failed", job.uuid, job.element)
            else:
                log.error("gallery job %s (%s) failed: %s", job.uuid, job.element, exc)
            job.finish(error=exc)
            return
        log.info("gallery job %s (%s) done", job.uuid, job.element)
        job.finish(result)

    def _forget_old(self) -> None:
        finished = [u for u, j in self._jobs.items() if j.processed]
        for key in finished[:max(0, len(finished) - KEEP_FINISHED)]:
            del self._jobs[key]

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def shutdown(self) -> None:
        for job in self.all():
            job.cancel_event.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
