"""factory_boy factories. Tenant-owned objects are created with the unscoped manager."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from agents.models import Agent
from analytics.models import Alert, UsageDaily
from integrations.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from sessions.models import ClientToken, TranscriptEntry, VoiceSession
from telephony.models import CarrierAccount, PhoneCall, PhoneNumber
from tools.models import AgentTool, LookupRecord, OutboxEmail, ToolCallRecord, WebhookTool
from voice_platform.tenancy.models import ApiKey, Membership, Tenant


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    is_staff = True
    password = factory.PostGenerationMethodCall("set_password", "pw")

    @factory.post_generation
    def _save(obj: Any, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    tenant = factory.SubFactory(TenantFactory)
    role = Membership.Role.ADMIN


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    @classmethod
    def _create(cls, model_class: type[Agent], *args: Any, **kwargs: Any) -> Agent:
        # unscoped: factories build fixtures for any tenant, outside any scope.
        obj = model_class(*args, **kwargs)
        obj.save()
        return obj

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"Agent {n}")
    slug = factory.Sequence(lambda n: f"agent-{n}")
    model = factory.LazyFunction(lambda: settings.LIVE_MODELS[0])
    response_modality = Agent.Modality.AUDIO


class TenantOwnedFactory(factory.django.DjangoModelFactory):
    """Base for tenant-owned models: related objects default to the same tenant."""

    class Meta:
        abstract = True

    @classmethod
    def _create(cls, model_class: type[Any], *args: Any, **kwargs: Any) -> Any:
        # unscoped: factories build fixtures for any tenant, outside any scope (a plain
        # save() never reads through the scoped manager).
        obj = model_class(*args, **kwargs)
        obj.save()
        return obj

    tenant = factory.SubFactory(TenantFactory)


def _same_tenant(sub: Any, **kwargs: Any) -> Any:
    """A SubFactory whose object belongs to the parent's tenant."""
    return factory.SubFactory(sub, tenant=factory.SelfAttribute("..tenant"), **kwargs)


class ApiKeyFactory(TenantOwnedFactory):
    """A key row with a random hash (use ``api_key_create`` for a key you can present)."""

    class Meta:
        model = ApiKey

    name = factory.Sequence(lambda n: f"key {n}")
    prefix = factory.LazyFunction(lambda: "vpk_" + secrets.token_hex(6))
    key_hash = factory.LazyFunction(lambda: secrets.token_hex(32))


class ClientTokenFactory(TenantOwnedFactory):
    """A live token (it can still open a session) with a random hash."""

    class Meta:
        model = ClientToken

    agent = _same_tenant(AgentFactory)
    end_user_id = factory.Sequence(lambda n: f"end-user-{n}")
    prefix = factory.LazyFunction(lambda: "ct_" + secrets.token_hex(4))
    token_hash = factory.LazyFunction(lambda: secrets.token_hex(32))
    uses = 1
    uses_left = 1
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(hours=1))
    new_session_expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=5))


class VoiceSessionFactory(TenantOwnedFactory):
    class Meta:
        model = VoiceSession

    agent = _same_tenant(AgentFactory)
    end_user_id = factory.Sequence(lambda n: f"end-user-{n}")
    status = VoiceSession.Status.ENDED


class TranscriptEntryFactory(TenantOwnedFactory):
    class Meta:
        model = TranscriptEntry

    session = _same_tenant(VoiceSessionFactory)
    seq = factory.Sequence(lambda n: n)
    role = TranscriptEntry.Role.USER
    kind = TranscriptEntry.Kind.TEXT
    text = factory.Sequence(lambda n: f"utterance {n}")
    at = factory.LazyFunction(timezone.now)


class WebhookToolFactory(TenantOwnedFactory):
    class Meta:
        model = WebhookTool

    name = factory.Sequence(lambda n: f"hook_{n}")
    description = "A tenant's webhook tool."
    parameters_schema = factory.LazyFunction(lambda: {"type": "object", "properties": {}})
    url = factory.Sequence(lambda n: f"https://hooks.example.com/{n}")


class AgentToolFactory(TenantOwnedFactory):
    """An allowlist entry for a webhook tool (no registry sync needed)."""

    class Meta:
        model = AgentTool

    agent = _same_tenant(AgentFactory)
    webhook_tool = _same_tenant(WebhookToolFactory)


class ToolCallRecordFactory(TenantOwnedFactory):
    class Meta:
        model = ToolCallRecord

    agent = _same_tenant(AgentFactory)
    session_ref = factory.LazyFunction(uuid.uuid4)
    end_user_id = factory.Sequence(lambda n: f"end-user-{n}")
    call_id = factory.Sequence(lambda n: f"call-{n}")
    tool_name = "get_current_time"
    status = ToolCallRecord.Status.SUCCEEDED


class OutboxEmailFactory(TenantOwnedFactory):
    class Meta:
        model = OutboxEmail

    to = factory.Sequence(lambda n: f"user{n}@example.com")
    subject = factory.Sequence(lambda n: f"Subject {n}")
    body = "Hello."


class LookupRecordFactory(TenantOwnedFactory):
    class Meta:
        model = LookupRecord

    key = factory.Sequence(lambda n: f"key-{n}")
    value = "value"


class AlertFactory(TenantOwnedFactory):
    class Meta:
        model = Alert

    agent = _same_tenant(AgentFactory)
    scope = factory.LazyAttribute(lambda o: f"agent:{o.agent.pk}")
    raised_at = factory.LazyFunction(timezone.now)
    window_seconds = 300
    threshold = 0.2
    events = 10
    failures = 5
    error_rate = 0.5
    peak_error_rate = 0.5


class UsageDailyFactory(TenantOwnedFactory):
    class Meta:
        model = UsageDaily

    agent = _same_tenant(AgentFactory)
    agent_ref = factory.LazyAttribute(lambda o: o.agent.pk)
    day = factory.LazyFunction(lambda: timezone.now().date())
    sessions = 3
    turns = 12


class WebhookEndpointFactory(TenantOwnedFactory):
    """An integrator endpoint; its secret is ``ENDPOINT_SECRET`` (encrypted)."""

    class Meta:
        model = WebhookEndpoint

    url = factory.Sequence(lambda n: f"https://hooks.example.com/events/{n}")
    description = factory.Sequence(lambda n: f"endpoint {n}")
    secret_encrypted = factory.LazyFunction(lambda: _encrypt(ENDPOINT_SECRET))


ENDPOINT_SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def _hash(value: str) -> str:
    from voice_platform.tenancy.services import hash_secret

    return hash_secret(value)


def _encrypt(value: str) -> str:
    from voice_platform.crypto import encrypt_str

    return encrypt_str(value)


class WebhookDeliveryFactory(TenantOwnedFactory):
    class Meta:
        model = WebhookDelivery

    endpoint = _same_tenant(WebhookEndpointFactory)
    event_type = "session.started"
    msg_id = factory.LazyFunction(lambda: f"msg_{uuid.uuid4().hex}")
    subject = factory.Sequence(lambda n: f"subject-{n}")
    payload = factory.LazyFunction(lambda: {"type": "session.started", "data": {}})
    status = WebhookDelivery.Status.SUCCEEDED
    attempt_count = 1
    round_attempts = 1


class WebhookAttemptFactory(TenantOwnedFactory):
    class Meta:
        model = WebhookAttempt

    delivery = _same_tenant(WebhookDeliveryFactory)
    number = factory.Sequence(lambda n: n + 1)
    started_at = factory.LazyFunction(timezone.now)
    status_code = 200
    outcome = WebhookAttempt.Outcome.SUCCEEDED


# A Twilio auth token for tests: signatures in tests are made with it (RequestValidator).
CARRIER_AUTH_TOKEN = "0123456789abcdef0123456789abcdef"  # a test fixture


class CarrierAccountFactory(TenantOwnedFactory):
    """A Twilio account whose auth token is ``CARRIER_AUTH_TOKEN`` (encrypted)."""

    class Meta:
        model = CarrierAccount

    name = factory.Sequence(lambda n: f"carrier {n}")
    account_sid = factory.Sequence(lambda n: f"AC{n:032x}")
    auth_token_encrypted = factory.LazyFunction(lambda: _encrypt(CARRIER_AUTH_TOKEN))


class PhoneNumberFactory(TenantOwnedFactory):
    """A number ringing an AUDIO agent of the same tenant."""

    class Meta:
        model = PhoneNumber

    number = factory.Sequence(lambda n: f"+1415555{n:04d}")
    carrier_account = _same_tenant(CarrierAccountFactory)
    agent = _same_tenant(AgentFactory, response_modality=Agent.Modality.AUDIO)


# The nonce of a PhoneCallFactory call's newest answer (its ``<Connect action>`` URL).
CALL_NONCE = "test-answer-nonce"


class PhoneCallFactory(TenantOwnedFactory):
    class Meta:
        model = PhoneCall

    answer_nonce_hash = factory.LazyFunction(lambda: _hash(CALL_NONCE))

    call_sid = factory.Sequence(lambda n: f"CA{n:032x}")
    phone_number = _same_tenant(PhoneNumberFactory)
    from_number = "+14155550100"
    to_number = factory.SelfAttribute("phone_number.number")
