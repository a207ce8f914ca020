"""REST: client tokens and sessions. Thin: parse, call a service or selector, serialize."""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents.selectors import agent_get
from sessions.models import ClientToken, TranscriptEntry, VoiceSession
from sessions.selectors import transcript_list, voice_session_list
from sessions.serializers import (
    ClientTokenCreateSerializer,
    ClientTokenIssuedSerializer,
    ClientTokenSerializer,
    TranscriptEntrySerializer,
    VoiceSessionDetailSerializer,
    VoiceSessionSerializer,
)
from sessions.services import voice_session_end_by_api
from sessions.tokens import client_token_issue, client_token_list_live, client_token_revoke
from voice_platform.rest_input import IdFilterField, TextFilterField, validate_query
from voice_platform.tenancy.api import TenantAPIView, TenantViewMixin, request_tenant
from voice_platform.tenancy.models import ApiKey


def websocket_url(request: Request, raw_token: str) -> str:
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{request.get_host()}/ws/v1/live?token={raw_token}"


class ClientTokenCreateApi(TenantAPIView):
    @extend_schema(
        request=ClientTokenCreateSerializer, responses={201: ClientTokenIssuedSerializer}
    )
    def post(self, request: Request, agent_id: int) -> Response:
        tenant = request_tenant(request)
        agent = agent_get(tenant=tenant, agent_id=agent_id)
        data = ClientTokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        api_key = request.auth if isinstance(request.auth, ApiKey) else None
        issued = client_token_issue(
            tenant=tenant,
            agent=agent,
            end_user_id=data.validated_data["user_id"],
            expire_seconds=data.validated_data["expire_seconds"],
            new_session_expire_seconds=data.validated_data["new_session_expire_seconds"],
            uses=data.validated_data["uses"],
            metadata=data.validated_data["metadata"],
            created_by=api_key,
        )
        body = ClientTokenIssuedSerializer(
            {
                "id": issued.token.pk,
                "token": issued.raw,
                "expires_at": issued.token.expires_at,
                "new_session_expires_at": issued.token.new_session_expires_at,
                "uses": issued.token.uses,
                "websocket_url": websocket_url(request, issued.raw),
            }
        ).data
        return Response(body, status=status.HTTP_201_CREATED)


class ClientTokenListApi(TenantViewMixin, generics.ListAPIView[ClientToken]):
    """Tokens that can still open a session."""

    serializer_class = ClientTokenSerializer

    def get_queryset(self) -> QuerySet[ClientToken]:
        return client_token_list_live(tenant=request_tenant(self.request))


class ClientTokenRevokeApi(TenantAPIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        token = get_object_or_404(ClientToken.objects.filter(tenant=request_tenant(request)), pk=pk)
        client_token_revoke(token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VoiceSessionFilterSerializer(serializers.Serializer[dict[str, Any]]):
    status = serializers.ChoiceField(required=False, choices=VoiceSession.Status.choices)
    agent = IdFilterField(required=False, help_text="An agent id.")
    user_id = TextFilterField(required=False, max_length=200, help_text="An end user id.")


class VoiceSessionListApi(TenantViewMixin, generics.ListAPIView[VoiceSession]):
    serializer_class = VoiceSessionSerializer

    @extend_schema(parameters=[VoiceSessionFilterSerializer])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[VoiceSession]:
        filters = validate_query(VoiceSessionFilterSerializer, self.request.query_params)
        return voice_session_list(
            tenant=request_tenant(self.request),
            status=filters.get("status"),
            agent_id=filters.get("agent"),
            end_user_id=filters.get("user_id"),
        )


class VoiceSessionDetailApi(TenantViewMixin, generics.RetrieveAPIView[VoiceSession]):
    serializer_class = VoiceSessionDetailSerializer

    def get_queryset(self) -> QuerySet[VoiceSession]:
        return voice_session_list(tenant=request_tenant(self.request))


class VoiceSessionTranscriptApi(TenantViewMixin, generics.ListAPIView[TranscriptEntry]):
    serializer_class = TranscriptEntrySerializer

    def get_queryset(self) -> QuerySet[TranscriptEntry]:
        session = get_object_or_404(
            voice_session_list(tenant=request_tenant(self.request)), pk=self.kwargs["pk"]
        )
        return transcript_list(session=session)


class VoiceSessionEndApi(TenantAPIView):
    @extend_schema(request=None, responses={200: VoiceSessionSerializer})
    def post(self, request: Request, pk: uuid.UUID) -> Response:
        session = get_object_or_404(voice_session_list(tenant=request_tenant(request)), pk=pk)
        voice_session_end_by_api(session=session)
        session.refresh_from_db()
        return Response(VoiceSessionSerializer(session).data)
