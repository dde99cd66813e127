from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from webapp.core import health, roles, selfmetrics, services
from webapp.core.forms import IngestTokenForm, ThrottledAuthenticationForm, UserCreateForm
from webapp.core.models import AuditEvent, IngestToken
from webapp.core.tokens import authenticate, raw_token_from_request


class LoginView(auth_views.LoginView):
    """Django's login (which already ignores a ``next`` pointing at another site), with
    failed-login lockouts: a refused attempt answers 429 with Retry-After."""

    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.has_error("__all__", "throttled"):
            response.status_code = 429
            response["Retry-After"] = str(form.retry_after)
        return response


@login_not_required
@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@login_not_required
@never_cache
@require_GET
def readyz(request):
    checks = {"database": health.check_database(), "broker": health.check_broker()}
    body = {name: ("ok" if error is None else f"down: {error}") for name, error in checks.items()}
    if not settings.CELERY_BROKER_URL:
        body["broker"] = "ok (tasks run in-process)"
    ready = all(error is None for error in checks.values())
    body["status"] = "ready" if ready else "not ready"
    return JsonResponse(body, status=200 if ready else 503)


@login_not_required
@never_cache
@require_GET
def metrics(request):
    if not settings.TELLTALE_METRICS_PUBLIC and not roles.has_role(request.user, roles.VIEWER):
        token = authenticate(raw_token_from_request(request))
        if token is None or IngestToken.SCOPE_READ not in token.scopes:
            return HttpResponse(
                "metrics need a logged-in user or a token with the read scope\n",
                status=401,
                content_type="text/plain",
                headers={"WWW-Authenticate": 'Bearer realm="telltale"'},
            )
    body, content_type = selfmetrics.render()
    return HttpResponse(body, content_type=content_type)


@roles.require_role(roles.VIEWER)
def settings_index(request):
    return render(
        request, "core/settings.html", {"is_admin": roles.has_role(request.user, "admin")}
    )


@roles.require_role(roles.ADMIN)
def user_list(request):
    User = get_user_model()
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.create_user(
                form.cleaned_data["username"],
                form.cleaned_data["password"],
                form.cleaned_data["role"],
                email=form.cleaned_data["email"],
                actor=request.user,
            )
        except ValueError as exc:
            form.add_error("username", str(exc))
        else:
            messages.success(request, f"User {form.cleaned_data['username']} created.")
            return redirect("user_list")
    users = [
        (user, roles.role_of(user))
        for user in User.objects.order_by("username").prefetch_related("groups")
    ]
    return render(request, "core/users.html", {"users": users, "form": form, "roles": roles.ROLES})


@roles.require_role(roles.ADMIN)
@require_POST
def user_set_role(request, user_id: int):
    user = get_object_or_404(get_user_model(), pk=user_id)
    role = request.POST.get("role") or None
    if role is not None and role not in roles.ROLES:
        messages.error(request, f"Unknown role {role!r}.")
    elif user == request.user and role != roles.ADMIN:
        messages.error(request, "You cannot remove your own admin role.")
    else:
        services.set_user_role(user, role, actor=request.user)
        messages.success(request, f"{user.get_username()} is now {role or 'without a role'}.")
    return redirect("user_list")


@roles.require_role(roles.ADMIN)
def token_list(request):
    form = IngestTokenForm(request.POST or None)
    new_token = None
    if request.method == "POST" and form.is_valid():
        try:
            _, new_token = services.create_ingest_token(
                form.cleaned_data["name"], form.cleaned_data["scopes"], actor=request.user
            )
        except ValueError as exc:
            form.add_error("name", str(exc))
        else:
            form = IngestTokenForm()
    tokens = IngestToken.objects.select_related("created_by")
    return render(
        request,
        "core/tokens.html",
        {"tokens": tokens, "form": form, "new_token": new_token, "site_url": settings.SITE_URL},
    )


@roles.require_role(roles.ADMIN)
@require_POST
def token_revoke(request, token_id: int):
    token = get_object_or_404(IngestToken, pk=token_id)
    services.revoke_ingest_token(token, actor=request.user)
    messages.success(request, f"Token {token.name} revoked.")
    return redirect("token_list")


@roles.require_role(roles.ADMIN)
def audit_log(request):
    events = AuditEvent.objects.select_related("actor").order_by("-at", "-id")
    action = request.GET.get("action", "").strip()
    if action:
        # "login" finds login.failed, login.locked…; "token.created" finds just that.
        events = events.filter(action__startswith=action)
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "core/audit.html",
        {"page": page, "events": page.object_list, "action": action},
    )
