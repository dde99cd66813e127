"""Forms for rules, silences, receivers, routes, inhibition rules and maintenance
windows. Validation says what is wrong in the words of the field."""

from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import forms
from django.core.validators import validate_email
from django.utils import timezone

from webapp.alerting import sources, templating
from webapp.alerting.matchers import ALERTNAME_RE, MatcherError, check_label_names, parse_matchers
from webapp.alerting.models import (
    SEVERITIES,
    AlertRule,
    InhibitionRule,
    MaintenanceWindow,
    Receiver,
    Route,
)
from webapp.mitigation.services import FAULT_CATEGORIES
from webapp.telemetry.promapi import DURATION_MS, DURATION_RE
from webapp.telemetry.selectors import LABEL_RE, SelectorError, parse_selector

LOG_SEVERITIES = [(0, "any"), (9, "info"), (13, "warn"), (17, "error"), (21, "fatal")]


def parse_duration_s(text: str) -> int:
    text = (text or "").strip()
    if text.isdigit():
        return int(text)
    match = DURATION_RE.match(text)
    if not text or not match or not any(match.groups()):
        raise forms.ValidationError(f"{text!r} is not a duration: write 90, 90s, 5m or 1h30m")
    ms = sum(int(g) * unit for g, unit in zip(match.groups(), DURATION_MS, strict=True) if g)
    return ms // 1000


class DurationField(forms.CharField):
    """Seconds, written as 90, 5m, 1h30m."""

    def __init__(self, *args, maximum: int | None = None, **kwargs):
        self.maximum = maximum
        kwargs.setdefault("widget", forms.TextInput(attrs={"size": 8}))
        super().__init__(*args, **kwargs)

    def prepare_value(self, value):
        if isinstance(value, int):
            return templating.humanize_duration(value)
        return value

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return None
        seconds = parse_duration_s(value)
        if self.maximum is not None and seconds > self.maximum:
            raise forms.ValidationError(f"at most {templating.humanize_duration(self.maximum)}")
        return seconds


def _json_labels(raw: str) -> dict:
    try:
        labels = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise forms.ValidationError(f"not valid JSON: {exc.msg}") from None
    try:
        return check_label_names(labels)
    except MatcherError as exc:
        raise forms.ValidationError(str(exc)) from None


def _matchers(raw: str, require_one: bool = False) -> str:
    try:
        parsed = parse_matchers(raw, require_one=require_one)
    except MatcherError as exc:
        raise forms.ValidationError(str(exc)) from None
    return ", ".join(str(m) for m in parsed)


class AlertRuleForm(forms.ModelForm):
    agg = forms.ChoiceField(choices=[(a, a) for a in AlertRule.AGGS], initial="avg")
    op = forms.ChoiceField(choices=[(o, o) for o in AlertRule.OPS], initial=">")
    severity = forms.ChoiceField(choices=[(s, s) for s in SEVERITIES], initial="warning")
    window_s = DurationField(label="Window", initial=300, maximum=sources.MAX_WINDOW_S)
    for_s = DurationField(label="For", initial=0, required=False)
    keep_firing_for_s = DurationField(label="Keep firing for", initial=0, required=False)
    interval_s = DurationField(label="Evaluation interval", initial=60)
    fault_category = forms.ChoiceField(
        choices=[("", "–")] + [(c, c) for c in FAULT_CATEGORIES], required=False
    )
    log_templates = forms.CharField(
        label="Log template ids",
        required=False,
        help_text="comma-separated ids from the log explorer",
    )
    log_min_severity = forms.TypedChoiceField(
        choices=LOG_SEVERITIES, coerce=int, initial=0, label="Minimum log severity"
    )
    log_group_by = forms.MultipleChoiceField(
        choices=[("node", "node"), ("instance", "instance")],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Count log lines per",
    )
    runbook_url = forms.URLField(required=False, max_length=500, assume_scheme="https")
    labels_text = forms.CharField(
        label="Labels",
        required=False,
        widget=forms.TextInput(attrs={"size": 50}),
        help_text='JSON object added to every alert, e.g. {"team": "infra"}',
    )

    class Meta:
        model = AlertRule
        fields = [
            "name",
            "kind",
            "enabled",
            "selector",
            "agg",
            "window_s",
            "op",
            "threshold",
            "absence_mode",
            "log_templates",
            "log_text",
            "log_min_severity",
            "log_group_by",
            "fault_category",
            "for_s",
            "keep_firing_for_s",
            "interval_s",
            "severity",
            "labels_text",
            "summary",
            "description",
            "runbook_url",
        ]
        widgets = {
            "selector": forms.TextInput(attrs={"size": 60}),
            "summary": forms.TextInput(attrs={"size": 60}),
            "description": forms.Textarea(attrs={"rows": 3, "cols": 60}),
        }
        help_texts = {
            "summary": "e.g. CPU of {{ $labels.node }} at {{ $value | humanizePercentage }}",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["labels_text"].initial = json.dumps(self.instance.labels)
            self.fields["log_templates"].initial = ", ".join(
                str(t) for t in self.instance.log_template_ids
            )

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not ALERTNAME_RE.match(name):
            raise forms.ValidationError("use letters, digits, _ and : (e.g. HostCpuHigh)")
        return name

    def clean_labels_text(self):
        labels = _json_labels(self.cleaned_data.get("labels_text"))
        for reserved in ("alertname", "severity"):
            if reserved in labels:
                raise forms.ValidationError(f"{reserved!r} is set by the rule itself")
        return labels

    def clean_log_templates(self):
        raw = self.cleaned_data.get("log_templates") or ""
        try:
            return [int(p) for p in raw.replace(" ", "").split(",") if p]
        except ValueError:
            raise forms.ValidationError("comma-separated numbers, please") from None

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        selector = (cleaned.get("selector") or "").strip()
        mode = cleaned.get("absence_mode") or ""
        for name in ("summary", "description"):
            try:
                templating.check(cleaned.get(name) or "")
            except templating.TemplateError as exc:
                self.add_error(name, str(exc))
        for name in ("for_s", "keep_firing_for_s"):
            if cleaned.get(name) is None:
                cleaned[name] = 0
        if cleaned.get("interval_s") is not None and cleaned["interval_s"] < 1:
            self.add_error("interval_s", "at least 1 second")
        if cleaned.get("window_s") is not None and cleaned["window_s"] < 1:
            self.add_error("window_s", "at least 1 second")
        series_selector = kind in (AlertRule.METRIC, AlertRule.UNHEALTHY, AlertRule.ABSENCE)
        if kind == AlertRule.ABSENCE and not mode:
            self.add_error("absence_mode", "choose what counts as absence")
        if kind not in (AlertRule.ABSENCE, AlertRule.UNHEALTHY) and mode:
            cleaned["absence_mode"] = mode = ""
        if mode == AlertRule.HEARTBEAT:
            series_selector = False
        if series_selector:
            try:
                parse_selector(selector)
            except SelectorError as exc:
                self.add_error("selector", str(exc))
        else:
            try:
                cleaned["selector"] = _matchers(selector)
            except forms.ValidationError as exc:
                self.add_error("selector", exc)
        if (
            kind == AlertRule.LOG
            and not cleaned.get("log_templates")
            and not cleaned.get("log_text")
        ):
            self.add_error("log_text", "give a text to match or log template ids")
        if kind == AlertRule.UNHEALTHY and not cleaned.get("fault_category"):
            self.add_error("fault_category", "say what kind of fault marks the node unhealthy")
        return cleaned

    def save(self, commit=True):
        rule = self.instance
        rule.labels = self.cleaned_data["labels_text"]
        rule.log_template_ids = self.cleaned_data["log_templates"]
        rule.log_group_by = list(self.cleaned_data.get("log_group_by") or [])
        return super().save(commit=commit)


class AckForm(forms.Form):
    comment = forms.CharField(required=False, max_length=500)


class SilenceForm(forms.Form):
    matchers = forms.CharField(
        max_length=1000,
        widget=forms.TextInput(attrs={"size": 70}),
        help_text='e.g. alertname="HostCpuHigh", node=~"n1|n2"',
    )
    starts_at = forms.DateTimeField(
        label="Starts (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    ends_at = forms.DateTimeField(
        label="Ends (UTC)",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    duration = DurationField(required=False, help_text="or a duration from the start, e.g. 2h")
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))

    def clean_matchers(self):
        return _matchers(self.cleaned_data["matchers"], require_one=True)

    def clean(self):
        cleaned = super().clean()
        start = cleaned.get("starts_at")
        if start is not None and cleaned.get("duration"):
            cleaned["ends_at"] = start + timedelta(seconds=cleaned["duration"])
        end = cleaned.get("ends_at")
        if end is None and not self.errors:
            self.add_error("ends_at", "give an end or a duration")
        elif start is not None and end is not None and end <= start:
            self.add_error("ends_at", "must be after the start")
        elif end is not None and end <= timezone.now():
            self.add_error("ends_at", "must be in the future")
        return cleaned


class ReceiverForm(forms.ModelForm):
    to = forms.CharField(
        required=False, help_text="email: comma-separated addresses", label="Email to"
    )
    sender = forms.CharField(required=False, label="Email from", help_text="default from settings")
    smarthost = forms.CharField(
        required=False, help_text="email: host:port of the SMTP server (default from settings)"
    )
    url = forms.URLField(required=False, max_length=1000, assume_scheme="https")
    max_alerts = forms.IntegerField(
        required=False, min_value=0, help_text="webhook: 0 sends every alert"
    )
    bearer_token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=True),
        help_text="webhook: sent as Authorization: Bearer …",
    )
    channel = forms.CharField(required=False, help_text="Slack: override the webhook's channel")

    class Meta:
        model = Receiver
        fields = ["name", "kind", "send_resolved", "enabled"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.instance.config or {}
        if self.instance.pk:
            self.fields["to"].initial = ", ".join(config.get("to", []))
            self.fields["sender"].initial = config.get("from", "")
            for key in ("smarthost", "url", "max_alerts", "bearer_token", "channel"):
                self.fields[key].initial = config.get(key)

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        config: dict = {}
        if kind == Receiver.EMAIL:
            to = [a.strip() for a in (cleaned.get("to") or "").split(",") if a.strip()]
            if not to:
                self.add_error("to", "at least one address")
            for address in to:
                try:
                    validate_email(address)
                except forms.ValidationError:
                    self.add_error("to", f"{address!r} is not an email address")
            config = {"to": to}
            if cleaned.get("sender"):
                config["from"] = cleaned["sender"]
            smarthost = (cleaned.get("smarthost") or "").strip()
            if smarthost:
                host, _, port = smarthost.rpartition(":")
                if not host or not port.isdigit():
                    self.add_error("smarthost", "write host:port")
                config["smarthost"] = smarthost
        elif kind in (Receiver.WEBHOOK, Receiver.SLACK):
            url = cleaned.get("url") or ""
            if not url.startswith(("http://", "https://")):
                self.add_error("url", "an http:// or https:// URL")
            config = {"url": url}
            if kind == Receiver.WEBHOOK:
                config["max_alerts"] = cleaned.get("max_alerts") or 0
                if cleaned.get("bearer_token"):
                    config["bearer_token"] = cleaned["bearer_token"]
            elif cleaned.get("channel"):
                config["channel"] = cleaned["channel"]
        cleaned["config"] = config
        return cleaned

    def save(self, commit=True):
        self.instance.config = self.cleaned_data["config"]
        return super().save(commit=commit)


def _label_list(raw: str) -> list[str]:
    names = [n.strip() for n in (raw or "").split(",") if n.strip()]
    for name in names:
        if name != "..." and not LABEL_RE.fullmatch(name):
            raise forms.ValidationError(f"{name!r} is not a label name")
    return names


class RouteForm(forms.ModelForm):
    group_by_text = forms.CharField(
        label="Group by",
        required=False,
        help_text='comma-separated label names, "..." for all labels; empty: inherit',
    )
    group_wait_s = DurationField(label="Group wait", required=False, help_text="empty: inherit")
    group_interval_s = DurationField(label="Group interval", required=False)
    repeat_interval_s = DurationField(label="Repeat interval", required=False)

    class Meta:
        model = Route
        fields = [
            "name",
            "parent",
            "position",
            "matchers",
            "receiver",
            "group_by_text",
            "group_wait_s",
            "group_interval_s",
            "repeat_interval_s",
            "continue_matching",
        ]
        widgets = {"matchers": forms.TextInput(attrs={"size": 60})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        parents = Route.objects.all()
        if self.instance.pk:
            parents = parents.exclude(pk__in=self._subtree(self.instance.pk))
            if self.instance.group_by is not None:
                self.fields["group_by_text"].initial = ", ".join(self.instance.group_by)
        self.fields["parent"].queryset = parents
        self.fields["parent"].help_text = "empty: this is the root route (there is one)"

    @staticmethod
    def _subtree(route_id: int) -> set[int]:
        ids, frontier = {route_id}, [route_id]
        while frontier:
            frontier = list(
                Route.objects.filter(parent_id__in=frontier).values_list("id", flat=True)
            )
            ids.update(frontier)
        return ids

    def clean_matchers(self):
        return _matchers(self.cleaned_data.get("matchers") or "")

    def clean_group_by_text(self):
        raw = self.cleaned_data.get("group_by_text") or ""
        return _label_list(raw) if raw.strip() else None

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("parent") is None:
            roots = Route.objects.filter(parent__isnull=True).exclude(pk=self.instance.pk)
            if roots.exists():
                self.add_error("parent", "there is a root route already; pick a parent")
            if cleaned.get("matchers"):
                self.add_error("matchers", "the root route matches every alert")
            if not cleaned.get("receiver"):
                self.add_error("receiver", "the root route needs a receiver")
        return cleaned

    def save(self, commit=True):
        self.instance.group_by = self.cleaned_data["group_by_text"]
        return super().save(commit=commit)


class InhibitionForm(forms.ModelForm):
    equal_text = forms.CharField(
        label="Equal labels", required=False, help_text="e.g. node, cluster"
    )

    class Meta:
        model = InhibitionRule
        fields = ["source_matchers", "target_matchers", "equal_text", "enabled", "comment"]
        widgets = {
            "source_matchers": forms.TextInput(attrs={"size": 60}),
            "target_matchers": forms.TextInput(attrs={"size": 60}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["equal_text"].initial = ", ".join(self.instance.equal)

    def clean_source_matchers(self):
        return _matchers(self.cleaned_data["source_matchers"], require_one=True)

    def clean_target_matchers(self):
        return _matchers(self.cleaned_data["target_matchers"], require_one=True)

    def clean_equal_text(self):
        return _label_list(self.cleaned_data.get("equal_text") or "")

    def save(self, commit=True):
        self.instance.equal = self.cleaned_data["equal_text"]
        return super().save(commit=commit)


WEEKDAYS = [(0, "Mon"), (1, "Tue"), (2, "Wed"), (3, "Thu"), (4, "Fri"), (5, "Sat"), (6, "Sun")]


class MaintenanceWindowForm(forms.ModelForm):
    weekdays = forms.TypedMultipleChoiceField(
        choices=WEEKDAYS, coerce=int, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = MaintenanceWindow
        fields = [
            "name",
            "matchers",
            "weekdays",
            "start_time",
            "duration_minutes",
            "timezone",
            "valid_from",
            "valid_until",
            "enabled",
            "comment",
        ]
        widgets = {
            "start_time": forms.TimeInput(attrs={"type": "time"}),
            "valid_from": forms.DateInput(attrs={"type": "date"}),
            "valid_until": forms.DateInput(attrs={"type": "date"}),
            "matchers": forms.TextInput(attrs={"size": 60}),
        }

    def clean_matchers(self):
        return _matchers(self.cleaned_data.get("matchers") or "")

    def clean_timezone(self):
        tz = self.cleaned_data["timezone"].strip() or "UTC"
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise forms.ValidationError(f"unknown time zone {tz!r}") from None
        return tz

    def clean_duration_minutes(self):
        minutes = self.cleaned_data["duration_minutes"]
        if not 1 <= minutes <= 7 * 24 * 60:
            raise forms.ValidationError("between 1 minute and 7 days")
        return minutes
