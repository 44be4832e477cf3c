"""Who may read what: the same rules as the admin."""

from rest_framework import permissions


class StaffCanView(permissions.BasePermission):
    """Staff users with the model's view permission, like the admin's read-only pages.

    Writes are left to the services, which check their own permissions.
    """

    message = "Only staff with permission to view these records may use this endpoint."

    def has_permission(self, request, view):
        model = view.get_queryset().model
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and user.is_staff
            and user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")
        )
