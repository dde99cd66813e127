from django.db import migrations


def seed(apps, schema_editor):
    Rule = apps.get_model("incidents", "CorrelationRule")
    Rule.objects.get_or_create(
        name="Alert or unhealthy node",
        defaults={
            "match_on": "node",
            "signal_kinds": ["alert", "unhealthy"],
            "window_minutes": 30,
            "min_signals": 1,
            "reopen_minutes": 60,
            "priority": 10,
        },
    )
    Rule.objects.get_or_create(
        name="Signals on the same node",
        defaults={
            "match_on": "node",
            "signal_kinds": [],
            "window_minutes": 30,
            "min_signals": 2,
            "reopen_minutes": 60,
            "priority": 100,
        },
    )


class Migration(migrations.Migration):
    dependencies = [("incidents", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
