"""The "Approvers" group: the permissions a person needs to decide and archive requests.

Created by a data migration, and again after every ``migrate`` or ``flush`` (a ``post_migrate``
handler), so a database emptied by tests or by hand never loses it.
"""

from django.contrib.auth.management import create_permissions

APPROVERS = "Approvers"
APPROVER_PERMISSIONS = ["decide_approvalrequest", "archive_approvalrequest", "view_approvalrequest"]


def ensure_approvers_group(apps):
    """Create the group with its permissions, from a migration's app registry or the real one."""
    app_config = apps.get_app_config("claims")
    # Permissions are normally created after all migrations; make sure they exist now. A
    # migration's app registry holds stubs without models_module, which create_permissions needs.
    is_stub = getattr(app_config, "models_module", None) is None
    if is_stub:
        app_config.models_module = True
    create_permissions(app_config, verbosity=0, apps=apps)
    if is_stub:
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=APPROVERS)
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="claims", codename__in=APPROVER_PERMISSIONS
        )
    )
    return group
