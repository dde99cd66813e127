"""Roles are Django groups: viewer reads, operator acts on incidents, admin configures.

Each role includes the ones below it; a superuser is an admin.
"""

from __future__ import annotations

from functools import wraps

from django.http import HttpResponseForbidden, JsonResponse

VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)
RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}


def role_of(user) -> str | None:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    if user.is_superuser:
        return ADMIN
    cached = getattr(user, "_telltale_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    role = max((r for r in ROLES if r in names), key=RANK.get, default=None)
    user._telltale_role = role
    return role


def has_role(user, role: str) -> bool:
    current = role_of(user)
    return current is not None and RANK[current] >= RANK[role]


def is_api_request(request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get(
        "Accept", ""
    )


def forbidden(request, role: str):
    message = f"This needs the {role} role."
    if is_api_request(request):
        return JsonResponse({"error": message}, status=403)
    return HttpResponseForbidden(message)


def require_role(role: str):
    """View decorator: the logged-in user must hold ``role`` (or a higher one)."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not has_role(request.user, role):
                return forbidden(request, role)
            return view(request, *args, **kwargs)

        wrapped.required_role = role
        return wrapped

    return decorator
