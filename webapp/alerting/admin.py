"""Data admin: read-only views of alert state and the notification log (changes go
through the alerting pages, which audit them)."""

from __future__ import annotations

from django.contrib import admin

from webapp.alerting.models import (
    AlertEvent,
    AlertInstance,
    AlertRule,
    Notification,
    NotificationAttempt,
    Silence,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AlertRule)
class AlertRuleAdmin(ReadOnlyAdmin):
    list_display = ("name", "kind", "enabled", "archived", "severity", "last_eval_at")
    list_filter = ("kind", "enabled", "archived", "severity")
    search_fields = ("name", "selector")


@admin.register(AlertInstance)
class AlertInstanceAdmin(ReadOnlyAdmin):
    list_display = ("id", "rule", "fingerprint", "state", "value", "fired_at", "resolved_at")
    list_filter = ("state",)
    search_fields = ("fingerprint",)


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "kind", "alert", "actor")
    list_filter = ("kind",)


@admin.register(Silence)
class SilenceAdmin(ReadOnlyAdmin):
    list_display = ("id", "matchers", "starts_at", "ends_at", "created_by")


class AttemptInline(admin.TabularInline):
    model = NotificationAttempt
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ("id", "receiver_name", "alert_status", "status", "attempts", "created_at")
    list_filter = ("status", "receiver_name")
    inlines = [AttemptInline]
