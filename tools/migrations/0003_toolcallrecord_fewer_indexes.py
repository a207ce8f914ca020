"""Fewer indexes on the audit table, and room in its pages for HOT updates.

Every call's row is updated twice (claim, outcome). With ``status`` in an index each update
wrote every index anew; now no index holds a column those updates change, and
``fillfactor = 70`` leaves room for the new row version in the same page.

The schema changes are the state's; the database only drops indexes (``DROP INDEX
CONCURRENTLY`` on PostgreSQL, so inserts are never blocked). Letting Django alter the
``tenant`` field would also drop and re-validate its foreign key, holding a lock over the
whole table, and on SQLite rebuild the table without its append-only trigger.
"""

from django.db import migrations, models

TABLE = "tools_toolcallrecord"
SINGLE_COLUMN_INDEXES = ("tenant_id", "created_at")  # led by (tenant, ...) composites now
STATUS_INDEX = "toolcall_tenant_status"


def _single_column_indexes(schema_editor, column):
    with schema_editor.connection.cursor() as cursor:
        constraints = schema_editor.connection.introspection.get_constraints(cursor, TABLE)
    return [
        name
        for name, info in constraints.items()
        if info["index"]
        and info["columns"] == [column]
        and not info["unique"]
        and not info["primary_key"]
        and not info["foreign_key"]
    ]


def forwards(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY " if postgres else ""
    names = [STATUS_INDEX]
    for column in SINGLE_COLUMN_INDEXES:
        names += _single_column_indexes(schema_editor, column)
    for name in names:
        schema_editor.execute(f'DROP INDEX {concurrently}IF EXISTS "{name}"')
    if postgres:
        schema_editor.execute(f"ALTER TABLE {TABLE} SET (fillfactor = 70)")


def backwards(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY " if postgres else ""
    schema_editor.execute(
        f'CREATE INDEX {concurrently}IF NOT EXISTS "{STATUS_INDEX}" ON {TABLE} (tenant_id, status)'
    )
    for column in SINGLE_COLUMN_INDEXES:
        if not _single_column_indexes(schema_editor, column):
            schema_editor.execute(
                f'CREATE INDEX {concurrently}"{TABLE}_{column}_idx" ON {TABLE} ({column})'
            )
    if postgres:
        schema_editor.execute(f"ALTER TABLE {TABLE} RESET (fillfactor)")


class Migration(migrations.Migration):
    atomic = False  # DROP INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("tenancy", "0001_initial"),
        ("tools", "0002_toolcallrecord_append_only"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="toolcallrecord", name=STATUS_INDEX),
                migrations.AlterField(
                    model_name="toolcallrecord",
                    name="created_at",
                    field=models.DateTimeField(auto_now_add=True),
                ),
                migrations.AlterField(
                    model_name="toolcallrecord",
                    name="tenant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=models.deletion.CASCADE,
                        related_name="+",
                        to="tenancy.tenant",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
