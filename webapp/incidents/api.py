"""Grafana-compatible annotations API: deploy scripts that post to Grafana can post here.

POST /api/annotations, GET /api/annotations?from=&to=&tags=&limit=&type=,
PATCH and DELETE /api/annotations/<id>. Logged-in users (viewers read, operators write,
admins delete) or tokens (``read`` to read, ``annotations:write`` to write).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import wraps

from django.contrib.auth.decorators import login_not_required
from django.db.models import Q
from django.http import JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from webapp.core import roles
from webapp.core.models import IngestToken
from webapp.core.tokens import authenticate, raw_token_from_request
from webapp.incidents import annotations
from webapp.incidents.models import Annotation

MAX_BODY = 64 * 1024


def _error(message: str, status: int = 400, field: str | None = None) -> JsonResponse:
    body = {"message": message}
    if field:
        body["field"] = field
    return JsonResponse(body, status=status)


def _auth(request, write: bool):
    """(user or None, token name or "") when allowed, else a JsonResponse to return."""
    raw = raw_token_from_request(request)
    if raw:
        token = authenticate(raw)
        if token is None:
            return _error("unknown or revoked token", 401)
        scope = IngestToken.SCOPE_ANNOTATIONS_WRITE if write else IngestToken.SCOPE_READ
        if scope not in token.scopes:
            return _error(f"this token lacks the {scope!r} scope", 403)
        return None, token.name
    if not request.user.is_authenticated:
        return _error("authentication required", 401)
    if not roles.has_role(request.user, roles.OPERATOR if write else roles.VIEWER):
        return _error("this needs the operator role" if write else "no role", 403)
    # Session requests that change state need the CSRF token, like every form.
    if write and CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {}) is not None:
        return _error("CSRF token missing or incorrect", 403)
    return request.user, ""


def endpoint(view):
    @csrf_exempt  # token clients have no CSRF cookie; session writes are checked in _auth
    @login_not_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        return view(request, *args, **kwargs)

    return wrapped


def _json_body(request):
    if len(request.body) > MAX_BODY:
        raise annotations.AnnotationError("body", f"the body is larger than {MAX_BODY} bytes")
    try:
        return json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise annotations.AnnotationError("body", f"the body is not JSON: {exc}") from None


@endpoint
def collection(request):
    if request.method == "GET":
        allowed = _auth(request, write=False)
        if isinstance(allowed, JsonResponse):
            return allowed
        return _list(request)
    if request.method != "POST":
        return _error("method not allowed", 405)
    allowed = _auth(request, write=True)
    if isinstance(allowed, JsonResponse):
        return allowed
    user, token_name = allowed
    try:
        fields = annotations.clean_payload(_json_body(request))
    except annotations.AnnotationError as exc:
        return _error(str(exc), 400, exc.field)
    annotation = annotations.create_annotation(fields, actor=user, token_name=token_name)
    return JsonResponse({"message": "Annotation added", "id": annotation.pk})


def _int(value, name: str, default: int | None = None) -> int | None:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise annotations.AnnotationError(name, f"{name} must be an integer") from None


def _list(request):
    g = request.GET
    try:
        start = _int(g.get("from"), "from")
        end = _int(g.get("to"), "to")
        limit = min(max(_int(g.get("limit"), "limit", 100), 1), 5000)
    except annotations.AnnotationError as exc:
        return _error(str(exc), 400, exc.field)
    qs = Annotation.objects.select_related("created_by", "node", "instance")
    if start is not None:  # overlapping [from, to]: starts after from, or ends after it
        since = datetime.fromtimestamp(start / 1000, tz=UTC)
        qs = qs.filter(Q(time__gte=since) | Q(time_end__gte=since))
    if end is not None:
        qs = qs.filter(time__lte=datetime.fromtimestamp(end / 1000, tz=UTC))
    tags = g.getlist("tags")
    if g.get("type") == "alert":
        qs = qs.none()  # Telltale's alerts are not annotations
    rows = [a for a in qs.order_by("-time")[: limit * 4 if tags else limit]]
    if tags:  # Grafana: every requested tag must be present
        rows = [a for a in rows if set(tags) <= set(a.tags)][:limit]
    return JsonResponse([annotations.as_grafana(a) for a in rows], safe=False)


@endpoint
def item(request, annotation_id: int):
    if request.method not in ("GET", "PATCH", "PUT", "DELETE"):
        return _error("method not allowed", 405)
    allowed = _auth(request, write=request.method != "GET")
    if isinstance(allowed, JsonResponse):
        return allowed
    user, _ = allowed
    annotation = Annotation.objects.filter(pk=annotation_id).first()
    if annotation is None:
        return _error("annotation not found", 404)
    if request.method == "GET":
        return JsonResponse(annotations.as_grafana(annotation))
    if request.method == "DELETE":
        if user is not None and not roles.has_role(user, roles.ADMIN):
            return _error("deleting annotations needs the admin role", 403)
        annotations.delete_annotation(annotation)
        return JsonResponse({"message": "Annotation deleted"})
    try:
        fields = annotations.clean_payload(_json_body(request), partial=request.method == "PATCH")
        annotations.update_annotation(annotation, fields)
    except annotations.AnnotationError as exc:
        return _error(str(exc), 400, exc.field)
    return JsonResponse(
        {"message": "Annotation patched" if request.method == "PATCH" else "Annotation updated"}
    )
