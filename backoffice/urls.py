from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from . import dashboard

admin.site.site_header = "Claimdesk"
admin.site.site_title = "Claimdesk"
admin.site.index_title = "Claims, approvals and the audit trail"
# "View site" and the bare host name both lead to the dashboard: the admin is the site.
admin.site.site_url = "/admin/"
# The app list is on the dashboard; at 1366 px the lists need the width the sidebar would take.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    # The admin index with the on-call dashboard; every other admin page is the stock one.
    path("admin/", admin.site.admin_view(dashboard.index), name="dashboard"),
    path("admin/", admin.site.urls),
    path("telegram/", include("telegram_bridge.urls")),
    path("api/", include("api.urls")),
    path("", include("monitoring.urls")),
]
