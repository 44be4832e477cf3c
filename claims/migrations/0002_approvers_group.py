"""Create the "Approvers" group holding the permissions to decide and archive requests."""

from django.db import migrations

from claims.groups import APPROVERS, ensure_approvers_group


def create_group(apps, schema_editor):
    ensure_approvers_group(apps)


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=APPROVERS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("claims", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
