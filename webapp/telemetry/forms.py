from __future__ import annotations

import json

from django import forms
from django.conf import settings

from webapp.telemetry.models import ScrapeTarget
from webapp.telemetry.selectors import LABEL_RE


class ScrapeTargetForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500, assume_scheme="http", help_text="e.g. http://host:9100/metrics"
    )
    labels_text = forms.CharField(
        label="Labels",
        required=False,
        help_text='JSON object, e.g. {"cluster": "eu1", "rack": "r12"}',
        widget=forms.TextInput,
    )

    class Meta:
        model = ScrapeTarget
        fields = ["name", "url", "interval_seconds", "timeout_seconds", "honor_labels", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["interval_seconds"].initial = settings.TELLTALE_SCRAPE_DEFAULT_INTERVAL
        if self.instance.pk:
            self.fields["labels_text"].initial = json.dumps(self.instance.labels)

    def clean_labels_text(self):
        raw = self.cleaned_data.get("labels_text") or "{}"
        try:
            labels = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc.msg}") from None
        if not isinstance(labels, dict):
            raise forms.ValidationError("labels must be a JSON object")
        for key, value in labels.items():
            if not LABEL_RE.fullmatch(key) or key.startswith("__"):
                raise forms.ValidationError(f"{key!r} is not a valid label name")
            if not isinstance(value, str):
                raise forms.ValidationError(f"the value of {key!r} must be a string")
        return labels

    def clean(self):
        cleaned = super().clean()
        interval = cleaned.get("interval_seconds")
        timeout = cleaned.get("timeout_seconds")
        if interval is not None and interval < 1:
            self.add_error("interval_seconds", "must be at least 1 second")
        if timeout is not None and interval is not None and not 0 < timeout <= interval:
            self.add_error("timeout_seconds", "must be positive and not longer than the interval")
        url = cleaned.get("url", "")
        if url and not url.startswith(("http://", "https://")):
            self.add_error("url", "only http:// and https:// targets can be scraped")
        return cleaned

    def save(self, commit=True):
        self.instance.labels = self.cleaned_data["labels_text"]
        return super().save(commit=commit)
