"""System checks for what the relay needs from the installed google-genai SDK."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core import checks

if TYPE_CHECKING:
    from sessions.relay.sdk_adapter import SdkSupport

ADAPTER = "sessions/relay/sdk_adapter.py"


def sdk_adapter_messages(support: SdkSupport, verified: str) -> list[checks.CheckMessage]:
    if not support.internals:
        return [
            checks.Error(
                f"google-genai {support.version} lacks the internals {ADAPTER} needs "
                f"({support.problem}): the audio fast path, ping watchdog and abort will use "
                "the SDK's public methods.",
                hint=f"Pin google-genai=={verified} or update {ADAPTER}.",
                id="voice_sessions.E001",
            )
        ]
    if support.version != verified:
        return [
            checks.Warning(
                f"google-genai {support.version} is not the version {ADAPTER} was verified "
                f"against ({verified}); its start-up probe of the SDK's internals passed.",
                hint=f"Run tests/sessions/relay, then set VERIFIED_VERSION in {ADAPTER}, "
                f"or pin google-genai=={verified}.",
                id="voice_sessions.W001",
            )
        ]
    return []


@checks.register(checks.Tags.compatibility)
def sdk_adapter_matches_installed_sdk(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    # Imported here: the SDK is a heavy import that most management commands never need.
    from sessions.relay import sdk_adapter

    return sdk_adapter_messages(sdk_adapter.support(), sdk_adapter.VERIFIED_VERSION)
