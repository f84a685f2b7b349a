"""LocalAI's gallery API: install models while the server runs, follow the job, delete them.

``POST /models/apply`` answers ``{"uuid", "status"}`` at once (``status``: the job's URL);
``GET /models/jobs/<uuid>`` is the job (LocalAI's fields); ``GET /models/jobs`` all of them by
uuid; ``POST /models/jobs/<uuid>/cancel`` stops one; ``GET /models/available``
lists the galleries' models; ``GET /models/galleries`` the galleries; ``POST
/models/delete/<name>`` deletes a model (a job too, as in LocalAI).
"""

from __future__ import annotations

from werkzeug.wrappers import Response

from localai.api import schemas
from localai.api.http import ApiRequest, Server, json_response, read_json_object
from localai.errors import Conflict, NotFound
from localai.gallery import Job


def _accepted(request: ApiRequest, job: Job) -> Response:
    return json_response({"uuid": job.uuid, "status": f"{request.host_url.rstrip('/')}/models/jobs/{job.uuid}"})


def on_apply(app: Server, request: ApiRequest) -> Response:
    body = schemas.validate("gallery_apply", read_json_object(request))
    job = app.gallery.apply(body)
    request.record.model = str(body.get("name") or body.get("id") or "")[:128] or None
    return _accepted(request, job)


def on_delete(app: Server, request: ApiRequest, name: str) -> Response:
    request.record.model = name
    return _accepted(request, app.gallery.delete(name))


def _job(app: Server, job_id: str) -> Job:
    job = app.gallery.jobs.get(job_id)
    if job is None:
        raise NotFound(f"No gallery job {job_id}.")
    return job


def on_job(app: Server, request: ApiRequest, job_id: str) -> Response:
    return json_response(_job(app, job_id).snapshot())


def on_jobs(app: Server, request: ApiRequest) -> Response:
    return json_response({job.uuid: job.snapshot() for job in app.gallery.jobs.all()})


def on_cancel(app: Server, request: ApiRequest, job_id: str) -> Response:
    job = _job(app, job_id)
    if not job.cancel():
        raise Conflict(f"The gallery job {job_id} has already finished.")
    return json_response(job.snapshot())


def on_available(app: Server, request: ApiRequest) -> Response:
    return json_response(app.gallery.available())


def on_galleries(app: Server, request: ApiRequest) -> Response:
    return json_response([gallery.as_dict() for gallery in app.gallery.galleries.galleries])
