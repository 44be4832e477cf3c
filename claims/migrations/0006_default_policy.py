from django.db import migrations


def create_default_policy(apps, schema_editor):
    """The catch-all policy: one approver, anyone who may decide, the requester too, expire at
    APPROVAL_EXPIRY. It is how requests were decided before policies existed."""
    ApprovalPolicy = apps.get_model("claims", "ApprovalPolicy")
    ApprovalPolicy.objects.get_or_create(
        kind="",
        story_pattern="",
        defaults={"name": "Default", "quorum": 1, "requester_may_approve": True},
    )


class Migration(migrations.Migration):
    dependencies = [("claims", "0005_approval_policies")]

    operations = [migrations.RunPython(create_default_policy, migrations.RunPython.noop)]
