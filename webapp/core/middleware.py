"""Login on every page by default, and request figures for /metrics."""

from __future__ import annotations

import time

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.http import JsonResponse

from webapp.core import roles, selfmetrics


class LoginRequiredMiddleware(DjangoLoginRequired):
    """Django's middleware, plus: API clients get a 401 JSON answer instead of a redirect,
    and a logged-in user without any role sees nothing."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        refused = super().process_view(request, view_func, view_args, view_kwargs)
        if refused is not None:
            return refused
        if getattr(view_func, "login_required", True) and roles.role_of(request.user) is None:
            return roles.forbidden(request, roles.VIEWER)
        return None

    def handle_no_permission(self, request, view_func):
        if roles.is_api_request(request):
            return JsonResponse({"error": "authentication required"}, status=401)
        return super().handle_no_permission(request, view_func)


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.url_name or "unnamed") if match else "not_found"
        selfmetrics.observe_request(
            request.method, view, response.status_code, time.perf_counter() - started
        )
        return response
