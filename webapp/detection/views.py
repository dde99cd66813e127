from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from webapp.core import roles
from webapp.detection import novelty, scoring, sensitivity, services, versions
from webapp.detection.models import AnomalyThreshold, ModelVersion, NoveltyCalibration

REPLAY_ROWS = 200  # replayed alarm events listed per table on a version's page


def _dated(events: list[dict]) -> list[dict]:
    return [
        {**e, "start": datetime.fromisoformat(e["start"]), "end": datetime.fromisoformat(e["end"])}
        for e in events
    ]


def _replay_counts(replay: dict) -> dict:
    events = replay.get("events", [])
    compared = [e["promoted_too"] for e in events if e.get("promoted_too") is not None]
    return {
        "events": len(events),
        "compared": replay.get("promoted_version") is not None,
        "both": sum(compared),
        "new": len(compared) - sum(compared),
        "promoted_only": len(replay.get("promoted_only", [])),
    }


@roles.require_role(roles.VIEWER)
def model_list(request):
    rows = list(ModelVersion.objects.select_related("created_by", "promoted_by"))
    kinds = [
        {
            "kind": kind,
            "versions": [v for v in rows if v.kind == kind],
            "promoted": next((v for v in rows if v.kind == kind and v.status == "promoted"), None),
            "rollback_to": versions.rollback_target(kind),
        }
        for kind, _ in ModelVersion.KINDS
    ]
    return render(
        request,
        "detection/models.html",
        {"kinds": kinds, "is_admin": roles.has_role(request.user, roles.ADMIN)},
    )


@roles.require_role(roles.VIEWER)
def model_detail(request, version_id: int):
    version = get_object_or_404(ModelVersion, pk=version_id)
    replay = version.replay or {}
    return render(
        request,
        "detection/model_detail.html",
        {
            "v": version,
            "replay": replay,
            "replay_events": _dated(replay.get("events", [])[:REPLAY_ROWS]),
            "promoted_only": _dated(replay.get("promoted_only", [])[:REPLAY_ROWS]),
            "replay_rows": REPLAY_ROWS,
            "replay_counts": _replay_counts(replay),
            "promoted": versions.promoted(version.kind),
            "is_admin": roles.has_role(request.user, roles.ADMIN),
        },
    )


@roles.require_role(roles.VIEWER)
@require_GET
def model_progress(request, version_id: int):
    v = get_object_or_404(ModelVersion, pk=version_id)
    return JsonResponse(
        {"state": v.training_state, "progress": v.progress, "error": v.error, "status": v.status}
    )


@roles.require_role(roles.ADMIN)
@require_POST
def model_train(request, kind: str):
    if kind not in dict(ModelVersion.KINDS):
        messages.error(request, f"Unknown model kind {kind!r}.")
        return redirect("model_list")
    version_id = versions.request_retraining(kind, actor=request.user)
    if not version_id:
        messages.error(request, f"A {kind} version is already queued or training.")
        return redirect("model_list")
    messages.success(request, "Training queued; progress shows below.")
    return redirect("model_detail", version_id=version_id)


@roles.require_role(roles.ADMIN)
@require_POST
def model_promote(request, version_id: int):
    version = get_object_or_404(ModelVersion, pk=version_id)
    try:
        versions.promote(version, actor=request.user, reason=request.POST.get("reason", ""))
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{version.kind} v{version.version} is now the promoted model.")
    return redirect("model_detail", version_id=version.pk)


@roles.require_role(roles.ADMIN)
@require_POST
def model_rollback(request, kind: str):
    try:
        version = versions.rollback(kind, actor=request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("model_list")
    messages.success(request, f"Rolled back: {kind} v{version.version} is promoted again.")
    return redirect("model_list")


def _known(value: float) -> float | None:
    return None if value != value else value  # NaN: no level is known


def _level_value(raw: str, field: str) -> float | None:
    """A form's alarm level: blank is None; anything else a calibrated score in (0, 100]."""
    raw = raw.strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{field}: a number from 0 to 100, not {raw[:20]!r}") from None
    return services.check_alarm_level(value, field)


@roles.require_role(roles.VIEWER)
def alarm_levels(request):
    """The anomaly alarm level per level, for the fleet and per cluster: the promoted
    version's own, the ones in force, and what another would have raised on the stored
    scores of the last day (GET ?vm=&vm_cluster=, ?host=&host_cluster=); admins set or clear
    them (POST)."""
    from webapp.telemetry.models import Node

    version = versions.promoted(ModelVersion.KIND_ANOMALY)
    own = sensitivity.model_levels(version)
    # The same levels as sensitivity.levels_in_force, without reading the version again.
    in_force = scoring.chosen_levels(own or {}, float("nan"))
    clusters = sorted(set(Node.objects.exclude(cluster="").values_list("cluster", flat=True)))
    is_admin = roles.has_role(request.user, roles.ADMIN)
    errors, status = [], 200
    if request.method == "POST":
        if not is_admin:
            return roles.forbidden(request, roles.ADMIN)
        if request.POST.get("action") == "refit-novelty" and version is not None:
            from workers.tasks import calibrate_novelty

            calibrate_novelty.delay(version.pk)
            messages.success(request, "The novelty calibration is being refitted.")
            return redirect("alarm_levels")
        level = request.POST.get("level", "")
        cluster = request.POST.get("cluster", "").strip()
        signal = request.POST.get("signal", AnomalyThreshold.SCORE)
        try:
            if level not in dict(AnomalyThreshold.LEVELS):
                raise ValueError("level: instances (vm) or nodes (host)")
            if signal not in dict(AnomalyThreshold.SIGNALS):
                raise ValueError("signal: score or novelty")
            if cluster and cluster not in clusters:
                raise ValueError(f"cluster: no node is in a cluster named {cluster[:100]!r}")
            value = _level_value(request.POST.get("value", ""), "value")
            services.set_anomaly_threshold(
                level,
                value,
                actor=request.user,
                reason=request.POST.get("reason", ""),
                cluster=cluster,
                signal=signal,
            )
        except ValueError as exc:
            errors.append(str(exc))
            status = 400
        else:
            messages.success(request, _level_message(level, cluster, signal, value))
            return redirect("alarm_levels")
    chosen = list(
        AnomalyThreshold.objects.filter(signal=AnomalyThreshold.SCORE).select_related("set_by")
    )
    rows = []
    for level, name in AnomalyThreshold.LEVELS:
        tried = None
        scope = request.GET.get(f"{level}_cluster", "").strip()
        try:
            tried = _level_value(request.GET.get(level, ""), level)
            if scope and scope not in clusters:
                raise ValueError(f"{level}_cluster: no node is in a cluster named {scope[:100]!r}")
        except ValueError as exc:
            errors.append(str(exc))
            status, tried, scope = 400, None, ""
        compare = {}
        if own is not None:
            compare["the model's own"] = own[level]
            current = in_force.value(level, scope)
            if current != own[level]:
                compare["in force"] = current
            if tried is not None:
                compare["tried"] = tried
        rows.append(
            {
                "level": level,
                "name": name,
                "own": (own or {}).get(level),
                "fleet": next((t for t in chosen if t.level == level and not t.cluster), None),
                "clusters": [t for t in chosen if t.level == level and t.cluster],
                "in_force": _known(in_force.value(level)),
                "scope": scope,
                "tried": tried,
                "backtest": sensitivity.backtest(level, compare, cluster=scope or None)
                if compare
                else None,
            }
        )
    novelty_rows, novelty_tried = _novelty_rows(request, version, errors, clusters)
    if novelty_tried is False:
        status = 400
    return render(
        request,
        "detection/alarm_levels.html",
        {
            "version": version,
            "rows": rows,
            "novelty_rows": novelty_rows,
            "novelty_level": settings.TELLTALE_NOVELTY_LEVEL or None,
            "novelty_tried": novelty_tried or None,
            "novelty_hours": settings.TELLTALE_NOVELTY_HOURS,
            "novelty_refit_hours": settings.TELLTALE_NOVELTY_REFIT_HOURS,
            "clusters": clusters,
            "is_admin": is_admin,
            "errors": errors,
        },
        status=status,
    )


def _level_message(level: str, cluster: str, signal: str, value: float | None) -> str:
    where = dict(AnomalyThreshold.LEVELS)[level] + (f" in {cluster}" if cluster else "")
    if signal == AnomalyThreshold.NOVELTY:
        fallback = "the fleet's novelty level" if cluster else "TELLTALE_NOVELTY_LEVEL"
        if value is None:
            return f"Novelty on {where} alarms at {fallback} again."
        return f"Novelty on {where} now alarms at {value:g}."
    fallback = "the fleet's level" if cluster else "the promoted version's own level"
    if value is None:
        return f"Anomalies on {where} alarm at {fallback} again."
    return f"Anomalies on {where} now alarm at {value:g}."


def _novelty_rows(
    request, version, errors: list[str], clusters: list[str]
) -> tuple[list[dict], float | bool | None]:
    """Per level: the promoted version's novelty calibration (when fitted, on how many
    targets, how many active ones it does not know yet), the novelty levels in force (the
    fleet's and the clusters' an admin set), and what the level in force, and one tried
    (GET ?novelty=, on the fleet or ?novelty_cluster=), would have raised on the stored
    novelty of the last day. The second value is the tried level, or False where it or its
    cluster was refused."""
    from webapp.detection.scoring import targets as active_targets

    if version is None:
        return [], None
    try:
        tried = _level_value(request.GET.get("novelty", ""), "novelty")
    except ValueError as exc:
        errors.append(str(exc))
        tried = False
    scope = request.GET.get("novelty_cluster", "").strip()
    if scope and scope not in clusters:
        errors.append(f"novelty_cluster: no node is in a cluster named {scope[:100]!r}")
        tried, scope = False, ""
    fits = {r.level: r for r in NoveltyCalibration.objects.filter(version=version)}
    fleets = novelty.in_force(version)
    in_force = novelty.levels()
    chosen = list(
        AnomalyThreshold.objects.filter(signal=AnomalyThreshold.NOVELTY).select_related("set_by")
    )
    rows = []
    for level, name in AnomalyThreshold.LEVELS:
        fit = fits.get(level)
        known = set(fit.data.get("scales", {})) if fit else set()
        active = {t.name for t in active_targets(level, timezone.now())}
        compare = {}
        if in_force is not None:
            compare["in force"] = in_force.value(level, scope)
        if tried:
            compare["tried"] = tried
        rows.append(
            {
                "level": level,
                "name": name,
                "fit": fit,
                "in_force": in_force.value(level) if in_force is not None else None,
                "fleet": next((t for t in chosen if t.level == level and not t.cluster), None),
                "clusters": [t for t in chosen if t.level == level and t.cluster],
                "not_known": len(active - known),
                "forecast_badly": fleets[level].forecast_badly()[:10] if level in fleets else [],
                "active": len(active),
                "scope": scope,
                "backtest": sensitivity.backtest(
                    level, compare, cluster=scope or None, metric=sensitivity.NOVELTY_METRIC
                )
                if compare and fit
                else None,
            }
        )
    return rows, tried
