from django.urls import path

from sessions import apis

urlpatterns = [
    path("agents/<int:agent_id>/tokens/", apis.ClientTokenCreateApi.as_view(), name="token-create"),
    path("tokens/", apis.ClientTokenListApi.as_view(), name="token-list"),
    path("tokens/<int:pk>/", apis.ClientTokenRevokeApi.as_view(), name="token-revoke"),
    path("sessions/", apis.VoiceSessionListApi.as_view(), name="session-list"),
    path("sessions/<uuid:pk>/", apis.VoiceSessionDetailApi.as_view(), name="session-detail"),
    path(
        "sessions/<uuid:pk>/transcript/",
        apis.VoiceSessionTranscriptApi.as_view(),
        name="session-transcript",
    ),
    path("sessions/<uuid:pk>/end/", apis.VoiceSessionEndApi.as_view(), name="session-end"),
]
