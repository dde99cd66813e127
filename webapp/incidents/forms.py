from __future__ import annotations

from django import forms

from webapp.incidents.models import SIGNAL_KINDS, CorrelationRule


class CorrelationRuleForm(forms.ModelForm):
    signal_kinds = forms.MultipleChoiceField(
        choices=[(k, k) for k in SIGNAL_KINDS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="none checked = every kind",
    )

    class Meta:
        model = CorrelationRule
        fields = [
            "name", "enabled", "match_on", "signal_kinds", "window_minutes", "min_signals",
            "reopen_minutes", "priority",
        ]  # fmt: skip

    def clean_min_signals(self):
        value = self.cleaned_data["min_signals"]
        if value < 1:
            raise forms.ValidationError("at least one signal is needed to open an incident")
        return value
