from __future__ import annotations

import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError

from webapp.core import roles, services, throttle
from webapp.core.models import IngestToken


class UserCreateForm(forms.Form):
    username = forms.CharField(max_length=150)
    email = forms.EmailField(required=False)
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)
    role = forms.ChoiceField(choices=[(r, r) for r in roles.ROLES], initial=roles.VIEWER)

    def clean_password(self):
        password = self.cleaned_data["password"]
        validate_password(password)
        return password


class IngestTokenForm(forms.Form):
    name = forms.SlugField(max_length=100, help_text="e.g. prometheus-eu1, agent-rack7")
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in IngestToken.SCOPES],
        initial=[IngestToken.SCOPE_METRICS_WRITE, IngestToken.SCOPE_LOGS_WRITE],
        widget=forms.CheckboxSelectMultiple,
    )


class LoginThrottleMixin:
    """Refuses a login for a locked name or address before checking the password, counts
    failures and clears the name's count on success (see webapp.core.throttle)."""

    retry_after: int | None = None

    def clean(self):
        username = str(self.data.get("username", ""))[:150]
        ip = throttle.client_ip(self.request) if self.request is not None else "unknown"
        locked = throttle.locked_for(username, ip)
        if locked is not None:
            scope, self.retry_after = locked
            services.login_refused(username, ip, scope, self.retry_after)
            minutes = math.ceil(self.retry_after / 60)
            raise ValidationError(
                f"Too many failed logins. Try again in {minutes} minute{'s' * (minutes != 1)}.",
                code="throttled",
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            services.login_failed(username, ip)
            raise
        if self.get_user() is not None:
            services.login_succeeded(self.get_user(), ip)
        return cleaned


class ThrottledAuthenticationForm(LoginThrottleMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(LoginThrottleMixin, AdminAuthenticationForm):
    pass
