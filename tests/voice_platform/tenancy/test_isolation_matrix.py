"""The tenant-isolation matrix: every tenant-owned model x every surface that can show it.

Nothing here is a list of models: they are discovered from the app registry at collection
time (every concrete subclass of ``TenantOwnedModel``), and the surfaces from the admin
registry and the URLconf. A new model is covered the day it exists, or the matrix fails and
says what is missing (a factory, a route's model).

Two tenants each hold one object of every model; each check runs both ways (Alice's
people against Charlie's objects and the other way round). "Foreign" means the other
tenant's object; it must answer exactly like a missing one (no existence oracle). Most
checks also have a positive control (the viewer's own object IS found on that surface), so
a surface that answered nothing to anyone could not pass.

Not applicable pairs are skipped with the reason (e.g. a model without a REST route).
"""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import Any

import factory
import pytest
from channels.db import database_sync_to_async
from django.apps import apps
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages import get_messages
from django.db import models
from django.forms.models import _get_foreign_key
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework import mixins
from rest_framework.test import APIClient

import tests.factories
from conftest import TenantWorld
from integrations.models import WebhookDelivery, WebhookEndpoint
from sessions.models import ClientToken, VoiceSession
from tests.factories import MembershipFactory
from tests.helpers import logged_in
from tests.sessions.conftest import (  # noqa: F401  (fixtures used by the live checks)
    live_settings,
    no_leaked_tasks,
    open_client,
)
from voice_platform.tenancy.api import TenantViewMixin
from voice_platform.tenancy.models import TenantOwnedModel
from voice_platform.tenancy.scope import all_tenants
from voice_platform.tenancy.services import hash_secret

# --- discovery ---------------------------------------------------------------------------


def tenant_owned_models() -> list[type[models.Model]]:
    found = [
        m
        for m in apps.get_models()
        if issubclass(m, TenantOwnedModel) and not m._meta.abstract and not m._meta.swapped
    ]
    assert found, "no tenant-owned model found: the discovery itself is broken"
    return sorted(found, key=lambda m: m._meta.label)


MODELS = tenant_owned_models()


def factory_for(model: type[models.Model]) -> type[factory.django.DjangoModelFactory]:
    """The factory of ``model`` (a proxy uses its concrete model's), or fail loudly."""
    concrete = model._meta.concrete_model
    for obj in vars(tests.factories).values():
        if (
            isinstance(obj, type)
            and issubclass(obj, factory.django.DjangoModelFactory)
            and not obj._meta.abstract
            and obj._meta.model in (model, concrete)
        ):
            return obj
    pytest.fail(
        f"add a factory for {model._meta.label} to tests/factories.py: the isolation matrix "
        "builds one object of every tenant-owned model per tenant"
    )


# REST routes whose ``pk`` is not the object the view serializes (sub-resources, actions,
# plain APIViews). A route with a ``pk`` that is neither here nor a DRF detail view fails.
ROUTE_PK_MODELS: dict[str, type[models.Model]] = {
    "token-revoke": ClientToken,
    "session-transcript": VoiceSession,
    "session-end": VoiceSession,
    "webhook-endpoint-rotate-secret": WebhookEndpoint,
    "webhook-endpoint-test": WebhookEndpoint,
    "webhook-delivery-replay": WebhookDelivery,
}
# Naming rules for read-only aggregate routes (route name or path): /api/v1/usage/ and its
# summary match the analytics rule; a route that matches joins the matrix without editing it.
EXPORT_RULE = re.compile(r"export|download|\.csv$|\.xlsx$|\.jsonl?$", re.IGNORECASE)
ANALYTICS_RULE = re.compile(r"analytic|stats|statistic|metric|usage|report|summary", re.I)
# The two WebSocket credentials (sessions.auth.resolve_tenant): a client token opens a
# session, a session's resume token resumes it.
WS_CREDENTIALS: dict[type[models.Model], str] = {ClientToken: "token", VoiceSession: "resume"}


@dataclass(frozen=True)
class Route:
    name: str
    path: str
    view: type[Any]
    kwargs: dict[str, type[models.Model]]  # path kwarg -> the model whose pk it carries
    methods: tuple[str, ...]

    def model_served(self) -> type[models.Model] | None:
        serializer = getattr(self.view, "serializer_class", None)
        meta = getattr(serializer, "Meta", None)
        return getattr(meta, "model", None)

    @property
    def is_list(self) -> bool:
        return issubclass(self.view, mixins.ListModelMixin)


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _kwarg_model(route_name: str, view: type[Any], kwarg: str) -> type[models.Model]:
    by_name = {m._meta.model_name: m for m in MODELS}
    if kwarg.endswith("_id") and kwarg[: -len("_id")].replace("_", "") in by_name:
        return by_name[kwarg[: -len("_id")].replace("_", "")]
    if kwarg == "pk":
        if route_name in ROUTE_PK_MODELS:
            return ROUTE_PK_MODELS[route_name]
        detail = (mixins.RetrieveModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin)
        served = Route(route_name, "", view, {}, ()).model_served()
        if issubclass(view, detail) and not issubclass(view, mixins.ListModelMixin) and served:
            return served
    pytest.fail(
        f"the isolation matrix cannot tell which model the {kwarg!r} of route {route_name!r} "
        f"({view.__name__}) refers to: name it <model>_id, or add the route to ROUTE_PK_MODELS"
    )


def rest_routes() -> list[Route]:
    routes = []
    for path, pattern in _walk(get_resolver().url_patterns):
        view = getattr(pattern.callback, "cls", None)
        if view is None or not issubclass(view, TenantViewMixin):
            continue
        assert pattern.name, f"REST route {path} has no name: the matrix reverses by name"
        converters = getattr(pattern.pattern, "converters", {})
        kwargs = {k: _kwarg_model(pattern.name, view, k) for k in converters}
        methods = tuple(
            m.upper()
            for m in view.http_method_names
            if m not in {"head", "options", "trace"} and hasattr(view, m)
        )
        routes.append(Route(pattern.name, "/" + path, view, kwargs, methods))
    assert routes, "no tenant REST route found: the discovery itself is broken"
    return routes


# --- the two tenants -----------------------------------------------------------------------


@dataclass
class Side:
    """One tenant: its API client, its staff admin and one object of every model."""

    world: TenantWorld
    staff: Any
    objects: dict[type[models.Model], models.Model] = field(default_factory=dict)

    @property
    def tenant_id(self) -> int:
        return int(self.world.tenant.pk)

    def make(self, model: type[models.Model], **kwargs: Any) -> models.Model:
        made: models.Model = factory_for(model).create(tenant=self.world.tenant, **kwargs)
        return made


# Objects a write would visibly change: a live session (an ended one stays as it is when a
# leaked "end" reaches it).
LIVE_STATE: dict[type[models.Model], dict[str, Any]] = {
    VoiceSession: {"status": VoiceSession.Status.ACTIVE},
}


class Matrix:
    """Both tenants, built on first use: a check that does not apply skips before paying for
    the objects."""

    def __init__(self, alice: TenantWorld, charlie: TenantWorld, superuser: Any) -> None:
        self._worlds = (alice, charlie)
        self.superuser = superuser

    @cached_property
    def _sides(self) -> tuple[Side, Side]:
        sides = []
        for world in self._worlds:
            staff = MembershipFactory(
                tenant=world.tenant, user__username=f"{world.tenant.slug}-admin"
            ).user
            side = Side(world=world, staff=staff)
            for model in MODELS:
                side.objects[model] = side.make(model, **LIVE_STATE.get(model, {}))
            sides.append(side)
        return sides[0], sides[1]

    @property
    def alice(self) -> Side:
        return self._sides[0]

    @property
    def charlie(self) -> Side:
        return self._sides[1]

    def directions(self) -> list[tuple[Side, Side]]:
        """(viewer, other): every check runs both ways."""
        return [(self.alice, self.charlie), (self.charlie, self.alice)]


@pytest.fixture
def matrix(alice: TenantWorld, charlie: TenantWorld, superuser: Any) -> Matrix:
    return Matrix(alice, charlie, superuser)


def snapshot(obj: models.Model) -> dict[str, Any] | None:
    """The row as stored (None when gone), read past any scope."""
    row: dict[str, Any] | None = type(obj)._base_manager.filter(pk=obj.pk).values().first()
    return row


def missing_pk(model: type[models.Model]) -> str:
    if isinstance(model._meta.pk, models.UUIDField):
        return str(uuid.uuid4())
    top = model._base_manager.aggregate(top=models.Max("pk"))["top"] or 0
    return str(top + 1_000_000)


def fk_to(model: type[models.Model], target: type[models.Model]) -> models.ForeignKey[Any, Any]:
    fks = [
        f
        for f in model._meta.fields
        if isinstance(f, models.ForeignKey) and f.related_model is target and f.name != "tenant"
    ]
    assert len(fks) == 1, f"{model._meta.label} has {len(fks)} foreign keys to {target}"
    return fks[0]


# --- admin helpers -------------------------------------------------------------------------


def model_admin(model: type[models.Model]) -> Any:
    if not admin.site.is_registered(model):
        pytest.skip(f"{model._meta.label} is not in the admin")
    return admin.site.get_model_admin(model)


def admin_url(model: type[models.Model], view: str, pk: Any = None) -> str:
    name = f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}"
    return reverse(name, args=[] if pk is None else [pk])


def admin_answer(
    user: Any, url: str, object_id: str, data: dict[str, Any] | None = None
) -> tuple[int, str, list[str]]:
    """What a user learns from a request: status, redirect target, messages (id blanked).
    A fresh session each time, so no message of an earlier request is carried over."""
    client = logged_in(user)
    response = client.post(url, data) if data is not None else client.get(url)
    blank = f"“{object_id}”"
    notes = [str(m).replace(blank, "“<id>”") for m in get_messages(response.wsgi_request)]
    return response.status_code, response.get("Location", ""), notes


def assert_admin_like_missing(
    user: Any, model: type[models.Model], view: str, foreign: models.Model, **post: Any
) -> None:
    absent = missing_pk(model)
    data = post or None
    seen = admin_answer(user, admin_url(model, view, foreign.pk), str(foreign.pk), data)
    expected = admin_answer(user, admin_url(model, view, absent), absent, data)
    assert seen == expected, f"{view} of another tenant's {model._meta.label}: {seen} != {expected}"
    assert seen[0] != 200 or view not in {"change", "delete", "history"}, seen


def tenant_owned_choices(form: Any) -> Iterator[tuple[str, models.Model]]:
    """(field name, option) for every tenant-owned option a form offers. Hidden fields
    offer nothing (a formset's row id is checked against the formset's own rows)."""
    for name, form_field in form.fields.items():
        if form_field.widget.is_hidden:
            continue
        queryset = getattr(form_field, "queryset", None)
        if queryset is None or not issubclass(queryset.model, TenantOwnedModel):
            continue
        yield from ((name, option) for option in queryset.all())


# --- admin surfaces ------------------------------------------------------------------------


def check_admin_changelist(m: Matrix, model: type[models.Model]) -> None:
    ma = model_admin(model)
    for viewer, other in m.directions():
        own, foreign = viewer.objects[model], other.objects[model]
        client = logged_in(viewer.staff)
        response = client.get(admin_url(model, "changelist"))
        assert response.status_code == 200
        listed = {obj.pk for obj in response.context["cl"].result_list}
        assert own.pk in listed  # the positive control: the page does list rows
        assert foreign.pk not in listed
        assert admin_url(model, "change", foreign.pk) not in response.text
        # A forged tenant filter or a search for the foreign row's own words finds nothing.
        for query in search_terms(ma, foreign):
            found = client.get(admin_url(model, "changelist"), {"q": query})
            assert found.status_code == 200
            assert foreign.pk not in {o.pk for o in found.context["cl"].result_list}
        forged = client.get(admin_url(model, "changelist"), {"tenant__id__exact": other.tenant_id})
        assert forged.status_code in {200, 302, 400}
        assert admin_url(model, "change", foreign.pk) not in forged.text
    # Platform operators administer every tenant: they see both rows.
    response = logged_in(m.superuser).get(admin_url(model, "changelist"))
    listed = {obj.pk for obj in response.context["cl"].result_list}
    assert {m.alice.objects[model].pk, m.charlie.objects[model].pk} <= listed


def search_terms(ma: Any, obj: models.Model) -> list[str]:
    terms = []
    for path in ma.search_fields:
        value: Any = obj
        for part in path.lstrip("=^@").split("__"):
            value = getattr(value, part, None)
        if value not in (None, ""):
            terms.append(str(value))
    return terms


def check_admin_change(m: Matrix, model: type[models.Model]) -> None:
    model_admin(model)
    for viewer, other in m.directions():
        own, foreign = viewer.objects[model], other.objects[model]
        client = logged_in(viewer.staff)
        before = snapshot(foreign)
        assert_admin_like_missing(viewer.staff, model, "change", foreign)
        assert_admin_like_missing(viewer.staff, model, "change", foreign, _save="Save")
        assert snapshot(foreign) == before
        # The viewer's own object opens, and its forms (inlines included) offer no option
        # of another tenant.
        response = client.get(admin_url(model, "change", own.pk))
        assert response.status_code == 200
        assert_choices_of_tenant(response, viewer.tenant_id)
        add = client.get(admin_url(model, "add"))
        if add.status_code == 200:
            assert_choices_of_tenant(add, viewer.tenant_id)
    # A superuser editing Alice's object is offered Alice's objects only.
    own = m.alice.objects[model]
    response = logged_in(m.superuser).get(admin_url(model, "change", own.pk))
    assert response.status_code == 200
    assert_choices_of_tenant(response, m.alice.tenant_id)


def assert_choices_of_tenant(response: Any, tenant_id: int) -> None:
    # Forms and their querysets were built inside the request's scope, which has closed:
    # read what they hold past it (a queryset keeps the filter it was built with).
    with all_tenants():
        forms = [response.context["adminform"].form]
        for inline in response.context.get("inline_admin_formsets", []):
            forms.extend(inline.formset.forms)
            forms.append(inline.formset.empty_form)
        for form in forms:
            for name, option in tenant_owned_choices(form):
                assert option.tenant_id == tenant_id, f"{name} offers another's {option!r}"


def check_admin_delete(m: Matrix, model: type[models.Model]) -> None:
    model_admin(model)
    for viewer, other in m.directions():
        foreign = other.objects[model]
        assert_admin_like_missing(viewer.staff, model, "delete", foreign)
        assert_admin_like_missing(viewer.staff, model, "delete", foreign, post="yes")
        assert snapshot(foreign) is not None


def check_admin_actions(m: Matrix, model: type[models.Model]) -> None:
    ma = model_admin(model)
    ran = 0
    for viewer, other in m.directions():
        foreign = other.objects[model]
        client = logged_in(viewer.staff)
        listing = client.get(admin_url(model, "changelist"))
        action_form = listing.context["action_form"]
        actions = action_form.fields["action"].choices if action_form is not None else []
        for action, _label in actions:
            if not action:
                continue
            before = snapshot(foreign)
            response = client.post(
                admin_url(model, "changelist"),
                {"action": action, "_selected_action": [foreign.pk], "post": "yes"},
            )
            assert response.status_code in {200, 302}, (action, response.status_code)
            assert snapshot(foreign) == before, f"action {action} changed a foreign row"
            ran += 1
    if not ran:
        pytest.skip(f"{type(ma).__name__} offers tenant staff no action")


def check_admin_history(m: Matrix, model: type[models.Model]) -> None:
    model_admin(model)
    for viewer, other in m.directions():
        client = logged_in(viewer.staff)
        assert client.get(admin_url(model, "history", viewer.objects[model].pk)).status_code == 200
        assert_admin_like_missing(viewer.staff, model, "history", other.objects[model])


def check_admin_shortcut(m: Matrix, model: type[models.Model], monkeypatch: Any) -> None:
    """``/admin/r/<ct>/<id>/``: own objects redirect to their page; another tenant's id, a
    missing id and a malformed one get the same 404 (DEBUG on, so the reason would show)."""
    if not hasattr(model, "get_absolute_url"):
        # No model has a public page yet: give it one, or every answer would be 404 alike
        # and the check could not tell a scoped shortcut from a dead one.
        monkeypatch.setattr(model, "get_absolute_url", lambda self: f"/page/{self.pk}/", False)
    registered = admin.site.is_registered(model)
    ct = ContentType.objects.get_for_model(model).pk

    def answer(client: Client, object_id: str) -> tuple[int, str]:
        path = f"admin/r/{ct}/{object_id}/"  # the DEBUG page shows it without the "/"
        response = client.get("/" + path)
        return response.status_code, response.content.decode().replace(path, "admin/r/<x>/")

    for viewer, other in m.directions():
        client = logged_in(viewer.staff)
        own = answer(client, str(viewer.objects[model].pk))
        foreign = answer(client, str(other.objects[model].pk))
        missing = answer(client, missing_pk(model))
        malformed = answer(client, "not-an-id")
        assert foreign[0] == 404
        assert foreign == missing == malformed
        # Only what the viewer could open in this admin has a way out.
        assert own[0] == (302 if registered else 404)
    response = logged_in(m.superuser).get(f"/admin/r/{ct}/{m.charlie.objects[model].pk}/")
    assert response.status_code == (302 if registered else 404)


def autocomplete_sources(model: type[models.Model]) -> list[tuple[type[models.Model], str]]:
    """Every (model, field) whose field points to ``model``: each is a way into the admin's
    autocomplete view, which lists ``model`` through its admin's search."""
    return [
        (source, f.name)
        for source in apps.get_models()
        for f in source._meta.get_fields()
        if f.is_relation and not f.auto_created and f.related_model is model
    ]


def check_admin_autocomplete(m: Matrix, model: type[models.Model]) -> None:
    ma = model_admin(model)
    if not ma.search_fields:
        pytest.skip(f"{model._meta.label}'s admin has no search: no autocomplete")
    sources = autocomplete_sources(model)
    if not sources:
        pytest.skip(f"nothing points to {model._meta.label}: no autocomplete can list it")
    for viewer, other in m.directions():
        own, foreign = viewer.objects[model], other.objects[model]
        client = logged_in(viewer.staff)
        for source, field_name in sources:
            for term in ["", *search_terms(ma, foreign)]:
                response = client.get(
                    "/admin/autocomplete/",
                    {
                        "app_label": source._meta.app_label,
                        "model_name": source._meta.model_name,
                        "field_name": field_name,
                        "term": term,
                    },
                )
                assert response.status_code == 200, (source, field_name, response.status_code)
                ids = {r["id"] for r in response.json()["results"]}
                assert str(foreign.pk) not in ids, (source, field_name, term)
                if term == "":
                    assert str(own.pk) in ids  # the positive control


def inline_parents(model: type[models.Model]) -> list[tuple[type[models.Model], Any]]:
    return [
        (parent, inline)
        for parent, parent_admin in admin.site._registry.items()
        for inline in parent_admin.inlines
        if inline.model is model
    ]


def check_admin_inline(m: Matrix, model: type[models.Model]) -> None:
    parents = inline_parents(model)
    if not parents:
        pytest.skip(f"{model._meta.label} is no admin's inline")
    for viewer, other in m.directions():
        client = logged_in(viewer.staff)
        for parent_model, inline in parents:
            fk = _get_foreign_key(parent_model, model, fk_name=inline.fk_name)
            parent = viewer.objects[parent_model]
            own_child = viewer.make(model, **{fk.name: parent})
            # Forged: a row of the other tenant hung under the viewer's parent (no service
            # writes such a row; a bug or a restore could).
            foreign_child = other.make(model, **{fk.name: parent})
            response = client.get(admin_url(parent_model, "change", parent.pk))
            assert response.status_code == 200
            shown = {
                form.instance.pk
                for formset in response.context["inline_admin_formsets"]
                if formset.formset.model is model
                for form in formset.formset.forms
            }
            assert own_child.pk in shown
            assert foreign_child.pk not in shown


# --- REST surfaces -------------------------------------------------------------------------


def route_values(route: Route, side: Side) -> dict[str, Any]:
    """Path kwargs naming ``side``'s objects, consistent with each other: the primary model
    (the ``pk``'s, else the only kwarg's) is ``side``'s object, the others its parents."""
    primary = route.kwargs.get("pk") or next(iter(route.kwargs.values()))
    obj = side.objects[primary]
    values = {}
    for kwarg, target in route.kwargs.items():
        values[kwarg] = (
            obj.pk if target is primary else getattr(obj, fk_to(primary, target).attname)
        )
    return values


def listed_rows(response: Any) -> list[dict[str, Any]]:
    body = response.json()
    rows: list[dict[str, Any]] = body["results"] if isinstance(body, dict) else body
    return rows


def row_of(route: Route, obj: models.Model) -> Any:
    """How ``obj`` appears in the route's list: its id, or (no id field) its whole row."""
    with all_tenants():  # the serializer may follow relations; the test reads past scopes
        data = dict(route.view.serializer_class(obj).data)
    return str(data["id"]) if "id" in data else json.dumps(data, sort_keys=True, default=str)


def rows_of(route: Route, rows: list[dict[str, Any]]) -> set[Any]:
    return {str(r["id"]) if "id" in r else json.dumps(r, sort_keys=True, default=str) for r in rows}


def routes_with(model: type[models.Model]) -> list[Route]:
    return [r for r in rest_routes() if model in r.kwargs.values()]


def check_rest_list(m: Matrix, model: type[models.Model]) -> None:
    routes = [r for r in rest_routes() if r.is_list and r.model_served() is model]
    if not routes:
        pytest.skip(f"no REST list of {model._meta.label}")
    for viewer, other in m.directions():
        for route in routes:
            own = viewer.objects[model]
            foreign = [other.objects[model]]
            kwargs = {}
            if route.kwargs:  # a nested list: under the parents of the viewer's own object
                fks = {k: fk_to(model, target) for k, target in route.kwargs.items()}
                kwargs = {k: getattr(own, fk.attname) for k, fk in fks.items()}
                # Forged: the other tenant's row hung under the viewer's parents.
                parents = {fk.name: getattr(own, fk.name) for fk in fks.values()}
                foreign.append(other.make(model, **parents))
            response = viewer.world.client.get(reverse(route.name, kwargs=kwargs))
            assert response.status_code == 200, (route.name, response.status_code)
            listed = rows_of(route, listed_rows(response))
            assert row_of(route, own) in listed  # the positive control
            for obj in foreign:
                assert row_of(route, obj) not in listed, (route.name, obj)


def rest_answer(client: APIClient, method: str, url: str) -> tuple[int, Any]:
    response = client.generic(method, url, data=b"{}", content_type="application/json")
    try:
        body = response.json()
    except (ValueError, TypeError):  # no JSON body (a 204, a CSV)
        body = response.content
    return response.status_code, body


def check_rest_methods(m: Matrix, model: type[models.Model], methods: set[str]) -> None:
    """Every route with ``model``'s id in its path, for ``methods``: the other tenant's id
    answers 404, the same as a missing id, and changes nothing."""
    cases = [(r, meth) for r in routes_with(model) for meth in r.methods if meth in methods]
    if not cases:
        pytest.skip(f"no REST route takes a {model._meta.label} id with {sorted(methods)}")
    for viewer, other in m.directions():
        client = viewer.world.client
        for route, method in cases:
            own = route_values(route, viewer)
            for kwarg, target in route.kwargs.items():
                if target is not model:
                    continue
                foreign = other.objects[model]
                before = snapshot(foreign)
                # Each variant names which kwargs carry the other tenant's ids; it must
                # answer like the same request with those ids missing.
                variants = {
                    "all foreign": (route_values(route, other), set(route.kwargs)),
                    "foreign id under own parents": ({**own, kwarg: foreign.pk}, {kwarg}),
                }
                for variant, (kwargs, foreign_kwargs) in variants.items():
                    absent = {
                        k: missing_pk(route.kwargs[k]) if k in foreign_kwargs else v
                        for k, v in kwargs.items()
                    }
                    expected = rest_answer(client, method, reverse(route.name, kwargs=absent))
                    assert expected[0] == 404, (route.name, method, expected)
                    seen = rest_answer(client, method, reverse(route.name, kwargs=kwargs))
                    assert seen == expected, (route.name, method, variant, seen, expected)
                assert snapshot(foreign) == before, (route.name, method)
            if method != "DELETE":
                # The positive control: the viewer's own ids reach the view (an empty body
                # may be refused, but not as "not found").
                status, body = rest_answer(client, method, reverse(route.name, kwargs=own))
                assert status != 404, (route.name, method, body)


def check_rest_detail(m: Matrix, model: type[models.Model]) -> None:
    check_rest_methods(m, model, {"GET"})


def check_rest_update(m: Matrix, model: type[models.Model]) -> None:
    check_rest_methods(m, model, {"PUT", "PATCH", "POST"})


def check_rest_delete(m: Matrix, model: type[models.Model]) -> None:
    check_rest_methods(m, model, {"DELETE"})


def body_of(response: Any) -> bytes:
    if response.streaming:
        return b"".join(response.streaming_content)
    return bytes(response.content)


def check_aggregate(m: Matrix, model: type[models.Model], rule: re.Pattern[str], kind: str) -> None:
    """Read-only aggregate routes (exports, analytics): what the viewer gets does not change
    when the other tenant gets one more object of ``model``; an export of ``model`` itself
    contains the viewer's row and not the other tenant's."""
    routes = [
        r
        for r in rest_routes()
        if "GET" in r.methods and (rule.search(r.name) or rule.search(r.path))
    ]
    if not routes:
        pytest.skip(f"no {kind} route (naming rule {rule.pattern!r})")
    for viewer, other in m.directions():
        for route in routes:
            assert not route.kwargs, f"{route.name}: teach the matrix its path kwargs"
            url = reverse(route.name)
            first = viewer.world.client.get(url)
            assert first.status_code == 200, (route.name, first.status_code)
            before = body_of(first)
            other.make(model)
            after = body_of(viewer.world.client.get(url))
            assert after == before, f"{route.name} changed with another tenant's {model}"
            if route.model_served() is model:
                ids = exported_ids(before)
                assert str(viewer.objects[model].pk) in ids
                assert str(other.objects[model].pk) not in ids


def exported_ids(body: bytes) -> set[str]:
    text = body.decode()
    if text.lstrip().startswith(("[", "{")):
        data = json.loads(text)
        rows = data["results"] if isinstance(data, dict) else data
        return {str(row["id"]) for row in rows}
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows, "an export of the viewer's rows is empty"
    assert "id" in rows[0], "an export needs an id column for the matrix"
    return {row["id"] for row in rows}


def check_rest_export(m: Matrix, model: type[models.Model]) -> None:
    check_aggregate(m, model, EXPORT_RULE, "export")


def check_rest_analytics(m: Matrix, model: type[models.Model]) -> None:
    check_aggregate(m, model, ANALYTICS_RULE, "analytics")


# --- the matrix ----------------------------------------------------------------------------

SURFACES: dict[str, Callable[..., None]] = {
    "admin_changelist": check_admin_changelist,
    "admin_change": check_admin_change,
    "admin_delete": check_admin_delete,
    "admin_actions": check_admin_actions,
    "admin_history": check_admin_history,
    "admin_shortcut": check_admin_shortcut,
    "admin_autocomplete": check_admin_autocomplete,
    "admin_inline": check_admin_inline,
    "rest_list": check_rest_list,
    "rest_detail": check_rest_detail,
    "rest_update": check_rest_update,
    "rest_delete": check_rest_delete,
    "rest_export": check_rest_export,
    "rest_analytics": check_rest_analytics,
}


@pytest.mark.django_db
@pytest.mark.parametrize("surface", list(SURFACES))
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.label)
def test_isolation_matrix(
    request: pytest.FixtureRequest, model: type[models.Model], surface: str, settings: Any
) -> None:
    factory_for(model)  # fail loudly before anything else when a model has no factory
    matrix = request.getfixturevalue("matrix")
    check = SURFACES[surface]
    if surface == "admin_shortcut":
        settings.DEBUG = True  # the DEBUG 404 page names the reason: it must not differ
        check(matrix, model, request.getfixturevalue("monkeypatch"))
    else:
        check(matrix, model)


# --- WebSocket credentials -----------------------------------------------------------------


@database_sync_to_async
def _live_world(alice: TenantWorld, charlie: TenantWorld) -> dict[str, Any]:
    """Per tenant: an agent, a live client token and a detached, resumable session."""
    out: dict[str, Any] = {}
    for world in (alice, charlie):
        agent = tests.factories.AgentFactory(tenant=world.tenant, response_modality="TEXT")
        raw_token, raw_resume = "ct_" + secrets.token_urlsafe(16), "rt_" + secrets.token_urlsafe(16)
        tests.factories.ClientTokenFactory(
            tenant=world.tenant, agent=agent, token_hash=hash_secret(raw_token)
        )
        session = tests.factories.VoiceSessionFactory(
            tenant=world.tenant,
            agent=agent,
            status=VoiceSession.Status.RECONNECTING,
            client_detached_at=timezone.now() - timedelta(seconds=1),
            resume_token_hash=hash_secret(raw_resume),
        )
        out[world.tenant.slug] = {
            "agent": agent, "token": raw_token, "resume": raw_resume, "session": session,
        }  # fmt: skip
    return out


@database_sync_to_async
def _forge(model: type[models.Model], tenant: Any, agent: Any) -> str:
    """A credential of ``tenant`` whose agent is another tenant's (no service writes one)."""
    if model is ClientToken:
        raw = "ct_" + secrets.token_urlsafe(16)
        tests.factories.ClientTokenFactory(tenant=tenant, agent=agent, token_hash=hash_secret(raw))
        return raw
    raw = "rt_" + secrets.token_urlsafe(16)
    tests.factories.VoiceSessionFactory(
        tenant=tenant,
        agent=agent,
        status=VoiceSession.Status.RECONNECTING,
        client_detached_at=timezone.now() - timedelta(seconds=1),
        resume_token_hash=hash_secret(raw),
    )
    return raw


@database_sync_to_async
def _sessions() -> dict[Any, tuple[Any, Any, str, str]]:
    return {
        s.pk: (s.tenant_id, s.agent_id, s.status, s.connection_channel)
        for s in VoiceSession._base_manager.all()
    }


async def _refused(query: str) -> int:
    client = await open_client(query)
    code = await client.until_closed(timeout=10)
    assert client.events == [], client.events  # nothing of the session reached the client
    return code


def live_cases() -> list[Any]:
    """Every (model, WebSocket surface); pairs that cannot apply are skipped at collection
    (before the emulator starts), with the reason."""
    cases = []
    for model in MODELS:
        for surface in ("ws_token", "ws_resume"):
            kind = surface.removeprefix("ws_")
            marks = []
            if WS_CREDENTIALS.get(model) != kind:
                reason = f"{model._meta.label} is not the WebSocket's {kind} credential"
                marks.append(pytest.mark.skip(reason=reason))
            cases.append(
                pytest.param(model, surface, marks=marks, id=f"{model._meta.label}-{surface}")
            )
    return cases


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("model", "surface"), live_cases())
async def test_isolation_matrix_live(
    model: type[models.Model],
    surface: str,
    live_settings: Any,  # noqa: F811  (the fixture imported above)
    alice: TenantWorld,
    charlie: TenantWorld,
) -> None:
    """A credential minted for one tenant opens or resumes only that tenant's sessions."""
    factory_for(model)
    kind = surface.removeprefix("ws_")
    live = await _live_world(alice, charlie)
    for viewer, other in [("alice", "charlie"), ("charlie", "alice")]:
        # 1. A credential of the viewer's tenant naming the other tenant's agent.
        forged = await _forge(model, live[viewer]["session"].tenant, live[other]["agent"])
        before = await _sessions()
        assert await _refused(f"{kind}={forged}") in {4001, 4003}
        # 2. The viewer's credential carrying the other tenant's one along.
        mixed = f"token={live[viewer]['token']}&resume={live[other]['resume']}"
        if kind == "resume":
            mixed = f"resume={live[viewer]['resume']}&token={live[other]['token']}"
        assert await _refused(mixed) == 4001
        after = await _sessions()
        assert {k: v for k, v in after.items() if k in before} == before  # nothing moved
        assert all(v[1] != live[other]["agent"].pk for k, v in after.items() if k not in before)
        # 3. The positive control: the viewer's own credential works, in its own tenant.
        client = await open_client(f"{kind}={live[viewer][kind]}")
        started = await client.until("session.started")
        assert started["agent"]["id"] == live[viewer]["agent"].pk
        if kind == "resume":
            assert started["session_id"] == str(live[viewer]["session"].pk)
        await client.send(type="close")
        await client.until_closed()
        opened = (await _sessions())[uuid.UUID(started["session_id"])]
        assert opened[:2] == (live[viewer]["session"].tenant_id, live[viewer]["agent"].pk)
