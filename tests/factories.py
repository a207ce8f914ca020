"""factory_boy factories. Tenant-owned objects are created with the unscoped manager."""

from __future__ import annotations

from typing import Any

import factory
from django.conf import settings
from django.contrib.auth import get_user_model

from agents.models import Agent
from voice_platform.tenancy.models import Membership, Tenant


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
