"""A tool call is identified by what the user asked (``idempotency_key``), and records the
conversation position (``turn``) it answers.

Both columns are nullable (rows written before have neither), so SQLite adds them with
``ALTER TABLE ADD COLUMN``, and nothing rebuilds the table: the key's uniqueness is a
partial index (built ``CONCURRENTLY`` on PostgreSQL, so inserts are never blocked), and the
status field's new default and choices are the model state's only (Django writes no column
default). The append-only trigger lists its columns on SQLite, so it is installed again
with the new ones; PostgreSQL's compares whole rows and needs nothing.
"""

import importlib

from django.db import migrations, models

# The append-only guard of 0002, with its column list (frozen there) and the two new ones.
_GUARD = importlib.import_module("tools.migrations.0002_toolcallrecord_append_only")
TABLE = _GUARD.TABLE
OLD_COLUMNS = _GUARD.COLUMNS
INDEX = "toolcallrecord_idempotency_key_uniq"


def _sqlite_trigger(schema_editor, columns):
    """0002's SQLite trigger, installed again over ``columns``."""
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only;")
    guard = _GUARD._sqlite_condition(columns)
    schema_editor.execute(
        f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE ON {TABLE} "
        f"FOR EACH ROW WHEN {guard} BEGIN SELECT RAISE(ABORT, '{_GUARD.MESSAGE}'); END;"
    )


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        _sqlite_trigger(schema_editor, (*OLD_COLUMNS, "idempotency_key", "turn"))


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        _sqlite_trigger(schema_editor, OLD_COLUMNS)


def create_index(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(
        f'CREATE UNIQUE INDEX {concurrently}IF NOT EXISTS "{INDEX}" ON {TABLE} '
        '("idempotency_key") WHERE "idempotency_key" IS NOT NULL'
    )


def drop_index(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f'DROP INDEX {concurrently}IF EXISTS "{INDEX}"')


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    dependencies = [
        ("tools", "0003_toolcallrecord_fewer_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="toolcallrecord",
            name="idempotency_key",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="toolcallrecord",
            name="turn",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="toolcallrecord",
                    name="status",
                    field=models.CharField(
                        choices=[
                            ("rejected", "Rejected"),
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("succeeded", "Succeeded"),
                            ("failed", "Failed"),
                            ("timeout", "Timed out"),
                            ("cancelled", "Cancelled"),
                        ],
                        default="queued",
                        max_length=16,
                    ),
                ),
                migrations.AddConstraint(
                    model_name="toolcallrecord",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("idempotency_key__isnull", False)),
                        fields=("idempotency_key",),
                        name=INDEX,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(create_index, drop_index)],
        ),
        migrations.RunPython(forwards, backwards),
    ]
