from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from voice_platform.health import healthz, readyz
from voice_platform.landing import landing
from voice_platform.observability.metrics_view import metrics_view

urlpatterns = [
    path("", landing, name="landing"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("agents.urls")),
    path("api/v1/", include("sessions.urls")),
    path("api/v1/", include("tools.urls")),
    path("api/v1/", include("analytics.urls")),
    path("api/v1/", include("integrations.urls")),
    path("", include("telephony.urls")),  # /phone/ (the carrier) and /api/v1/phone/
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("playground/", include("playground.urls")),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]

handler404 = "voice_platform.api_errors.not_found"  # JSON under /api/ (docs/api.md)
