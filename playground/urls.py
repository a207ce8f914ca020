"""Playground URLs, wrapped in the admin site's door: the same login, staff check and
tenant scope as every admin page."""

from django.contrib import admin
from django.urls import path

from playground import views

app_name = "playground"

urlpatterns = [
    path(
        "agents/<int:agent_id>/",
        admin.site.admin_view(views.agent_playground),
        name="agent",
    ),
    path(
        "agents/<int:agent_id>/token/",
        admin.site.admin_view(views.agent_token),
        name="agent-token",
    ),
]
