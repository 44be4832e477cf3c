from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter()
# No ".json" suffix routes: any id between two slashes reaches its view, whose selector answers
# 404 for one that is malformed or unknown (see the lookup_value_regex of each viewset).
router.include_format_suffixes = False
router.register("claims", views.ClaimViewSet, basename="claim")
router.register("approvals", views.ApprovalViewSet, basename="approval")
router.register("jobs", views.JobViewSet, basename="job")
router.register("audit", views.AuditEventViewSet, basename="auditevent")
router.register("outbox", views.OutboundMessageViewSet, basename="outboundmessage")

app_name = "api"
urlpatterns = [
    path("v1/callbacks/secret/", views.CallbackSecretView.as_view(), name="callback-secret"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    re_path(r"^(?P<path>.*)$", views.no_such_endpoint),
]
