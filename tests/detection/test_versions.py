from __future__ import annotations

import pytest
from django.urls import reverse

from webapp.core.models import AuditEvent
from webapp.detection import versions
from webapp.detection.models import ModelVersion


def _trained(kind="anomaly", **kw):
    v = versions.create_version(kind)
    ModelVersion.objects.filter(pk=v.pk).update(training_state=ModelVersion.SUCCEEDED, **kw)
    v.refresh_from_db()
    return v


def test_versions_are_numbered_per_kind(db):
    assert [versions.create_version("anomaly").version for _ in range(3)] == [1, 2, 3]
    assert versions.create_version("mitigation").version == 1
    with pytest.raises(ValueError):
        versions.create_version("weather")


def test_promote_retires_the_previous_and_rollback_brings_it_back(db, users):
    first, second = _trained(), _trained()
    versions.promote(first, actor=users.admin)
    versions.promote(second, actor=users.admin)
    first.refresh_from_db()
    assert first.status == "retired" and versions.promoted("anomaly") == second
    assert ModelVersion.objects.filter(kind="anomaly", status="promoted").count() == 1
    back = versions.rollback("anomaly", actor=users.admin)
    assert back == first and versions.promoted("anomaly") == first
    assert AuditEvent.objects.filter(action="model.promoted").count() == 3


def test_only_trained_versions_can_be_promoted(db):
    queued = versions.create_version("anomaly")
    with pytest.raises(ValueError, match="successfully trained"):
        versions.promote(queued)
    with pytest.raises(ValueError, match="no earlier"):
        versions.rollback("interference")


def test_failed_training_is_recorded_not_raised(db, monkeypatch):
    from webapp.detection import training

    def broken(version):
        raise RuntimeError("out of memory")

    monkeypatch.setitem(training.TRAINERS, "anomaly", broken)
    version = versions.run_training(versions.create_version("anomaly").pk)
    assert version.training_state == "failed" and "out of memory" in version.error


def test_model_pages_and_permissions(viewer_client, admin_client, db):
    version = _trained(metrics={"validation.f1": 0.9})
    assert viewer_client.get(reverse("model_list")).status_code == 200
    assert viewer_client.get(reverse("model_detail", args=[version.pk])).status_code == 200
    assert viewer_client.post(reverse("model_promote", args=[version.pk])).status_code == 403
    assert viewer_client.post(reverse("model_train", args=["anomaly"])).status_code == 403
    admin_client.post(reverse("model_promote", args=[version.pk]), {"reason": "better"})
    version.refresh_from_db()
    assert version.status == "promoted"
    progress = viewer_client.get(reverse("model_progress", args=[version.pk])).json()
    assert progress["state"] == "succeeded"
    # A finished first version is not said to be waiting for its comparison.
    page = viewer_client.get(reverse("model_detail", args=[version.pk])).text
    assert "no version was promoted when this one was trained" in page
    queued = versions.create_version("anomaly", {})
    page = viewer_client.get(reverse("model_detail", args=[queued.pk])).text
    assert "it runs when training finishes" in page


def test_retraining_is_not_queued_twice(db):
    first = versions.request_retraining("mitigation")
    assert first and versions.request_retraining("mitigation") == 0


def test_bootstrap_queues_each_untrained_kind_once_with_the_profile(db):
    _trained("anomaly")
    assert versions.bootstrap_models("off") == []
    queued = ModelVersion.objects.filter(pk__in=versions.bootstrap_models("quick"))
    assert sorted(v.kind for v in queued) == ["interference", "mitigation"]
    mitigation = queued.get(kind="mitigation")
    assert mitigation.config["train"] == versions.PROFILES["quick"]["mitigation"]
    assert versions.bootstrap_models("quick") == []  # versions exist now: nothing more


def test_train_command_bootstrap_queues_without_training(db):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("train", bootstrap=True, profile="quick", stdout=out)
    assert "queued 3" in out.getvalue()
    assert set(ModelVersion.objects.values_list("training_state", flat=True)) == {"queued"}


@pytest.mark.parametrize("kind", ["anomaly", "interference", "mitigation"])
def test_each_kind_trains_through_the_app_and_is_promoted_first(
    db, kind, tmp_path, settings, monkeypatch
):
    settings.VAR_DIR = tmp_path
    reported = []
    record = versions.report_progress

    def recording(version_id, **progress):
        reported.append(progress.get("message", ""))
        record(version_id, **progress)

    monkeypatch.setattr(versions, "report_progress", recording)
    version = versions.create_version(kind, {"train": versions.PROFILES["quick"][kind]})
    version = versions.run_training(version.pk)
    assert version.training_state == "succeeded", version.error
    assert version.status == "promoted" and version.metrics
    version.refresh_from_db()
    assert reported and version.progress["message"] == reported[-1]  # shown on Models page
    stage = {"anomaly": " epoch ", "interference": " epoch ", "mitigation": "causal forest 1/"}
    assert any(stage[kind] in f" {m}" for m in reported), reported
    if kind == "anomaly":  # shown beside the promoted one's, so shared data is visible
        assert isinstance(version.metrics["validation_fleet_seed"], int)


def test_a_restarted_worker_fails_only_its_own_interrupted_runs(db):
    mine, theirs = versions.create_version("anomaly"), versions.create_version("mitigation")
    ModelVersion.objects.filter(pk=mine.pk).update(training_state="running", worker="trainer@a")
    ModelVersion.objects.filter(pk=theirs.pk).update(training_state="running", worker="trainer@b")
    assert versions.fail_interrupted("trainer@a") == 1
    mine.refresh_from_db(), theirs.refresh_from_db()
    assert mine.training_state == "failed" and "interrupted" in mine.error
    assert theirs.training_state == "running"
    # A second delivery of a running version's task does not train it again.
    assert versions.run_training(theirs.pk).training_state == "running"


def test_bootstrap_retries_a_failed_first_model_a_bounded_number_of_times(db):
    for attempt in range(versions.BOOTSTRAP_ATTEMPTS):
        queued = ModelVersion.objects.filter(pk__in=versions.bootstrap_models("quick"))
        assert "anomaly" in {v.kind for v in queued}, f"attempt {attempt + 1} not queued"
        ModelVersion.objects.filter(training_state="queued").update(training_state="failed")
    assert versions.bootstrap_models("quick") == []


def test_a_new_interference_version_is_scored_beside_the_promoted_on_its_held_out_windows(
    db, tmp_path, settings, interference_artefact
):
    """The stored figures of two versions come from each one's own validation data; the
    comparison also scores both on the new version's held-out windows, and says whether the
    promoted version held those workloads out too."""
    import json
    from pathlib import Path

    from tests.conftest import promote_artefact

    settings.VAR_DIR = tmp_path
    promote_artefact("interference", interference_artefact)
    version = versions.create_version(
        "interference", {"train": versions.PROFILES["quick"]["interference"]}
    )
    version = versions.run_training(version.pk)
    assert version.training_state == "succeeded", version.error
    rows = version.comparison
    for key in ("mae_pp", "coverage", "interval_width"):
        pair = rows[f"same held-out windows: {key}"]
        assert isinstance(pair["candidate"], float) and isinstance(pair["promoted"], float)
    held = [
        json.loads((Path(p) / "metrics.json").read_text())["val_groups"]
        for p in (version.artefact_path, interference_artefact)
    ]
    both = rows["same held-out windows: held out by both"]["promoted"]
    assert both == (
        "yes" if set(held[0]) <= set(held[1]) else "no: it trained on some of these workloads"
    )
    # A promoted version that reads longer windows is not scored on windows it cannot read.
    config = Path(interference_artefact) / "scaler.json"
    original = config.read_text()
    try:
        changed = json.loads(original)
        changed["window"] += 4
        config.write_text(json.dumps(changed))
        second = versions.run_training(
            versions.create_version(
                "interference", {"train": versions.PROFILES["quick"]["interference"]}
            ).pk
        )
    finally:
        config.write_text(original)
    assert "steps" in second.comparison["same held-out windows: not compared"]["promoted"]


def test_the_models_page_offers_a_rollback_only_to_a_version_that_exists(admin_client, users):
    page = admin_client.get(reverse("model_list")).content.decode()
    assert "Roll back" not in page  # nothing retired yet
    first, second = _trained(), _trained()
    versions.promote(first, actor=users.admin)
    assert "Roll back" not in admin_client.get(reverse("model_list")).content.decode()
    versions.promote(second, actor=users.admin)
    page = admin_client.get(reverse("model_list")).content.decode()
    assert f"Roll back to v{first.version}" in page
