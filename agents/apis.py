"""REST: agents CRUD under /api/v1/agents/. Thin: parse, call a service, serialize."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import generics

from agents.models import Agent
from agents.selectors import agent_list
from agents.serializers import AgentSerializer
from agents.services import agent_create, agent_delete, agent_update
from voice_platform.tenancy.api import TenantViewMixin, request_tenant


class AgentListCreateApi(TenantViewMixin, generics.ListCreateAPIView[Agent]):
    serializer_class = AgentSerializer

    def get_queryset(self) -> QuerySet[Agent]:
        return agent_list(tenant=request_tenant(self.request))

    def perform_create(self, serializer: AgentSerializer) -> None:  # type: ignore[override]
        serializer.instance = agent_create(
            tenant=request_tenant(self.request), **serializer.validated_data
        )


class AgentDetailApi(TenantViewMixin, generics.RetrieveUpdateDestroyAPIView[Agent]):
    serializer_class = AgentSerializer

    def get_queryset(self) -> QuerySet[Agent]:
        return agent_list(tenant=request_tenant(self.request))

    def perform_update(self, serializer: AgentSerializer) -> None:  # type: ignore[override]
        agent = self.get_object()
        serializer.instance = agent_update(agent=agent, **serializer.validated_data)

    def perform_destroy(self, instance: Agent) -> None:
        agent_delete(agent=instance)
