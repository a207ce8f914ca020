"""The audit log is append-only: a database trigger refuses updates of finished records.

Allowed on a finished row: setting the session, agent or allowlist-entry foreign key to
NULL (what ``on_delete=SET_NULL`` does when those are deleted). Deletes stay allowed at the
database level so deleting a tenant cascades; no admin or REST path deletes records.
If a column is added to ToolCallRecord, add it to COLUMNS here in a new migration.
"""

from django.db import migrations

TABLE = "tools_toolcallrecord"
FINISHED = ("rejected", "succeeded", "failed", "timeout", "cancelled")
NULLABLE_FKS = ("agent_id", "agent_tool_id", "session_id")
COLUMNS = (
    "id", "tenant_id", "session_ref", "end_user_id", "call_id", "tool_name", "is_webhook",
    "arguments", "pending_arguments", "status", "rejection_reason", "result",
    "result_preview", "error", "behavior", "scheduling", "timeout_seconds", "celery_task_id",
    "created_at", "queued_at", "started_at", "finished_at", "queue_ms", "duration_ms",
)
MESSAGE = "tool call records are append-only: a finished record cannot change"
FINISHED_SQL = ", ".join(f"'{status}'" for status in FINISHED)


def _sqlite_condition(columns=COLUMNS) -> str:
    changed = [f"NEW.{c} IS NOT OLD.{c}" for c in columns]
    changed += [f"(NEW.{c} IS NOT OLD.{c} AND NEW.{c} IS NOT NULL)" for c in NULLABLE_FKS]
    return f"OLD.status IN ({FINISHED_SQL}) AND ({' OR '.join(changed)})"


def _pg_condition() -> str:
    minus = "".join(f" - '{c}'" for c in NULLABLE_FKS)
    changed = [f"(to_jsonb(NEW){minus}) IS DISTINCT FROM (to_jsonb(OLD){minus})"]
    changed += [
        f"(NEW.{c} IS DISTINCT FROM OLD.{c} AND NEW.{c} IS NOT NULL)" for c in NULLABLE_FKS
    ]
    return f"OLD.status IN ({FINISHED_SQL}) AND ({' OR '.join(changed)})"


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(
            f"""
            CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger AS $$
            BEGIN
                IF {_pg_condition()} THEN
                    RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'integrity_constraint_violation';
                END IF;
                RETURN NEW;
            END;
            $$ LANGUAGE plpgsql;
            """
        )
        schema_editor.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE ON {TABLE} "
            f"FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only();"
        )
    elif vendor == "sqlite":
        schema_editor.execute(
            f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE ON {TABLE} "
            f"FOR EACH ROW WHEN {_sqlite_condition()} "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;"
        )
    else:
        raise RuntimeError(f"no append-only guard for database vendor {vendor!r}")


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE};")
        schema_editor.execute(f"DROP FUNCTION IF EXISTS {TABLE}_append_only();")
    elif vendor == "sqlite":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only;")


class Migration(migrations.Migration):
    dependencies = [("tools", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall)]
