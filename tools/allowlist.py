"""An agent's runnable tools, resolved once per session: what its Live setup declares and
what its calls are admitted against.

A session keeps its ``ToolAllowlist`` in memory. Every saved or deleted allowlist entry or
webhook tool gives the tenant a new version (``tools.allowlist_version``); ``current()``
compares versions (one cache read) and reloads on a mismatch, so disabling a tool or
tightening a policy applies to the very next call. Execution reads the entry again anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.genai import types

from agents.models import Agent
from tools.allowlist_version import allowlist_version
from tools.models import AgentTool, WebhookTool
from tools.registry import ToolSpec, get_tool, json_schema_to_gemini


@dataclass(frozen=True)
class ResolvedTool:
    """One allowlist entry with its effective settings (the entry's, else the tool's)."""

    entry: AgentTool
    spec: ToolSpec | None  # a registry tool
    webhook: WebhookTool | None  # or a tenant's webhook tool
    timeout: float
    rate_limit: str
    behavior: str
    scheduling: str | None
    sensitive: tuple[str, ...]

    @property
    def rate_scope_prefix(self) -> str:
        # created_at too: an entry deleted and re-created starts with fresh counters.
        return f"{self.entry.pk}:{self.entry.created_at.timestamp()}"


def webhook_declaration(webhook: WebhookTool) -> types.FunctionDeclaration:
    return types.FunctionDeclaration(
        name=webhook.name,
        description=webhook.description,
        parameters=json_schema_to_gemini(webhook.parameters_schema),
    )


@dataclass(frozen=True)
class ToolAllowlist:
    agent: Agent
    version: str  # the tenant's allowlist version when it was read
    declarations: list[types.FunctionDeclaration]
    entries: dict[str, ResolvedTool]

    def resolve(self, name: str) -> ResolvedTool | None:
        return self.entries.get(name)

    def current(self) -> ToolAllowlist:
        """This allowlist, or the agent's as it is now if an entry changed since."""
        if allowlist_version(self.agent.tenant_id) == self.version:
            return self
        return tool_allowlist_for_agent(agent=self.agent)


def _resolved(
    entry: AgentTool, spec: ToolSpec | None = None, webhook: WebhookTool | None = None
) -> ResolvedTool:
    """The entry's settings, else its tool's (a registry tool, or a webhook tool: blocking,
    no scheduling, no sensitive arguments)."""
    if spec is not None:
        timeout, rate_limit = spec.timeout, spec.rate_limit
    else:
        assert webhook is not None  # noqa: S101 (one or the other)
        timeout, rate_limit = webhook.timeout_seconds, webhook.rate_limit
    return ResolvedTool(
        entry=entry,
        spec=spec,
        webhook=webhook,
        timeout=entry.timeout_seconds or timeout,
        rate_limit=entry.rate_limit or rate_limit,
        behavior=spec.behavior if spec is not None else "BLOCKING",
        scheduling=spec.scheduling if spec is not None else None,
        sensitive=spec.sensitive if spec is not None else (),
    )


def tool_allowlist_for_agent(*, agent: Agent) -> ToolAllowlist:
    """The agent's enabled allowlist entries that can run, keyed by tool name.

    A platform tool wins over a webhook tool of the same name; a tool missing from code or
    a disabled webhook tool is left out (and so refused as not allowlisted).
    """
    version = allowlist_version(agent.tenant_id)  # first: a change during the read reloads
    declarations: list[types.FunctionDeclaration] = []
    entries: dict[str, ResolvedTool] = {}
    rows = AgentTool.objects.filter(tenant_id=agent.tenant_id, agent=agent, enabled=True)
    for entry in rows.select_related("tool", "webhook_tool").order_by("id"):
        if entry.tool is not None:
            spec = get_tool(entry.tool.name)
            if spec is None or spec.name in entries:
                continue
            declarations.append(spec.function_declaration())
            entries[spec.name] = _resolved(entry, spec=spec)
        elif entry.webhook_tool is not None and entry.webhook_tool.enabled:
            webhook = entry.webhook_tool
            if webhook.name in entries or get_tool(webhook.name):
                continue  # a platform tool of the same name wins
            declarations.append(webhook_declaration(webhook))
            entries[webhook.name] = _resolved(entry, webhook=webhook)
    return ToolAllowlist(agent=agent, version=version, declarations=declarations, entries=entries)


def tool_declarations_for_agent(*, agent: Agent) -> list[types.FunctionDeclaration]:
    """Exactly the agent's enabled tools that can run (what the Live setup declares)."""
    return tool_allowlist_for_agent(agent=agent).declarations
