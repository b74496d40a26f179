"""core tariffs: the tariff book as append-only versions by effective date (core_tariff_version)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 18:40:00.000000

The table starts empty: ``gashub db upgrade`` and the hub's start-up seed it from the shipped tariff
file (``billing.tariffs_file``) while it is empty. Triggers refuse ``UPDATE`` and ``DELETE``: a price
change is a new version from a later date, never an edit.
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

REFUSAL = 'core_tariff_version is append-only: a price change is a new version from a later date'

POSTGRESQL_UP = [
    f"""CREATE FUNCTION core_tariff_version_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{REFUSAL}';
END $$""",
    """CREATE TRIGGER core_tariff_version_append_only BEFORE UPDATE OR DELETE ON core_tariff_version
    FOR EACH ROW EXECUTE FUNCTION core_tariff_version_append_only()""",
]
POSTGRESQL_DOWN = [
    "DROP TRIGGER IF EXISTS core_tariff_version_append_only ON core_tariff_version",
    "DROP FUNCTION IF EXISTS core_tariff_version_append_only()",
]
SQLITE_UP = [
    f"""CREATE TRIGGER core_tariff_version_no_{verb.lower()} BEFORE {verb} ON core_tariff_version
    BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END""" for verb in ("UPDATE", "DELETE")
]
SQLITE_DOWN = [f"DROP TRIGGER IF EXISTS core_tariff_version_no_{verb}" for verb in ("update", "delete")]


def upgrade() -> None:
    op.create_table('core_tariff_version',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('note', sa.String(length=500), nullable=False),
    sa.CheckConstraint("category IN ('residential', 'industrial', 'commercial', 'heating')",
                       name=op.f('ck_core_tariff_version_category')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_tariff_version')),
    sa.UniqueConstraint('category', 'effective_from', name='uq_core_tariff_version_category_date'),
    sa.UniqueConstraint('category', 'version', name='uq_core_tariff_version_category_label')
    )
    dialect = op.get_bind().dialect.name
    for statement in POSTGRESQL_UP if dialect == 'postgresql' else SQLITE_UP if dialect == 'sqlite' else []:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in POSTGRESQL_DOWN if dialect == 'postgresql' else SQLITE_DOWN if dialect == 'sqlite' else []:
        op.execute(statement)
    op.drop_table('core_tariff_version')
