from django.db import migrations

# The actions the legacy runbook chooses among (the simulator's ACTIONS use the same keys).
ACTIONS = [
    ("observe", "Observe", "Keep the node in service and watch it.", False, False, False),
    (
        "reboot_host",
        "Reboot host",
        "Reboot the node; its instances restart with it.",
        True,
        False,
        False,
    ),
    (
        "redeploy_instances",
        "Redeploy instances elsewhere",
        "Stop the node's instances and start them on other nodes.",
        False,
        False,
        False,
    ),
    (
        "live_migrate_then_repair",
        "Live-migrate, then repair",
        "Move running instances to spare capacity on the rack, then repair the node.",
        False,
        True,
        True,
    ),
    (
        "mark_out_for_repair",
        "Mark out for repair",
        "Take the node out of service until a technician repairs it.",
        False,
        True,
        False,
    ),
]


def seed(apps, schema_editor):
    Action = apps.get_model("mitigation", "MitigationAction")
    for key, name, description, default, out, rack in ACTIONS:
        Action.objects.update_or_create(
            key=key,
            defaults={
                "name": name,
                "description": description,
                "is_legacy_default": default,
                "takes_node_out": out,
                "needs_rack_capacity": rack,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("mitigation", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
