from django.urls import path

from agents.apis import AgentDetailApi, AgentListCreateApi

urlpatterns = [
    path("agents/", AgentListCreateApi.as_view(), name="agent-list"),
    path("agents/<int:pk>/", AgentDetailApi.as_view(), name="agent-detail"),
]
