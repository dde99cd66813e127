from __future__ import annotations

from django import forms
from django.contrib.auth.password_validation import validate_password

from webapp.core import roles
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
