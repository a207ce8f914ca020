from django.urls import path

from tools.apis import (
    AgentToolDetailApi,
    AgentToolListCreateApi,
    ToolCallDetailApi,
    ToolCallExportApi,
    ToolCallListApi,
    WebhookToolDetailApi,
    WebhookToolListCreateApi,
)

urlpatterns = [
    path("agents/<int:agent_id>/tools/", AgentToolListCreateApi.as_view(), name="agent-tool-list"),
    path(
        "agents/<int:agent_id>/tools/<int:pk>/",
        AgentToolDetailApi.as_view(),
        name="agent-tool-detail",
    ),
    path("webhook-tools/", WebhookToolListCreateApi.as_view(), name="webhook-tool-list"),
    path("webhook-tools/<int:pk>/", WebhookToolDetailApi.as_view(), name="webhook-tool-detail"),
    path("tool-calls/", ToolCallListApi.as_view(), name="tool-call-list"),
    path("tool-calls/export.csv", ToolCallExportApi.as_view(), name="tool-call-export"),
    path("tool-calls/<int:pk>/", ToolCallDetailApi.as_view(), name="tool-call-detail"),
]
