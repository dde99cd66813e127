"""CSRF for views that also serve bearer-token clients.

Such views are ``csrf_exempt`` because token clients have no CSRF cookie; but when the
same view is reached with a session cookie, a browser may have been tricked into sending
it, so the session path must pass Django's CSRF check like every form.
"""

from __future__ import annotations

from django.middleware.csrf import CsrfViewMiddleware


def session_csrf_failed(request) -> bool:
    """True when a state-changing request carries no valid CSRF token (or Origin)."""
    check = CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})
    return check is not None
