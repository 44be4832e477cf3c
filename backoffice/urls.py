from django.contrib import admin
from django.urls import include, path

admin.site.site_header = "Claimdesk"
admin.site.site_title = "Claimdesk"
admin.site.index_title = "Claims, approvals and the audit trail"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("telegram/", include("telegram_bridge.urls")),
    path("api/", include("api.urls")),
    path("", include("monitoring.urls")),
]
