"""Admin building blocks shared by the apps."""


class ReadOnlyAdminMixin:
    """No add, change or delete: the records change only through services, or never (audit).

    Staff can still view them, and the admins add buttons and actions that call services.
    """

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
