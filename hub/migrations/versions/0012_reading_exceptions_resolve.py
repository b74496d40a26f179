"""core readings: the exceptions list takes the daily checks' findings and resolutions; bills say
whether their volume is an estimate

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27 18:30:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('core_reading_exception', schema=None) as batch_op:
        batch_op.alter_column('volume_m3', existing_type=sa.Numeric(precision=14, scale=3), nullable=True)
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='reading', nullable=False))
        batch_op.add_column(sa.Column('severity', sa.String(length=16), server_default='error', nullable=False))
        batch_op.add_column(sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resolved_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('resolution', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('resolution_note', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('corrected_m3', sa.Numeric(precision=14, scale=3), nullable=True))
        batch_op.create_check_constraint(batch_op.f('ck_core_reading_exception_kind'), "kind IN ('reading', 'check')")
        batch_op.create_check_constraint(
            batch_op.f('ck_core_reading_exception_resolution'),
            "resolution IS NULL OR resolution IN ('accepted', 'corrected', 'estimated')")
        batch_op.create_index(batch_op.f('ix_core_reading_exception_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_core_reading_exception_status_read_at', ['status', 'read_at'], unique=False)
    with op.batch_alter_table('core_bill', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quality', sa.String(length=16), server_default='actual', nullable=False))
        batch_op.create_check_constraint(batch_op.f('ck_core_bill_quality'), "quality IN ('actual', 'estimated')")
        batch_op.create_index('ix_core_bill_estimated', ['account_id', 'period_end'], unique=False,
                              postgresql_where=sa.text("quality = 'estimated'"),
                              sqlite_where=sa.text("quality = 'estimated'"))


def downgrade() -> None:
    with op.batch_alter_table('core_bill', schema=None) as batch_op:
        batch_op.drop_index('ix_core_bill_estimated')
        batch_op.drop_constraint(batch_op.f('ck_core_bill_quality'), type_='check')
        batch_op.drop_column('quality')
    with op.batch_alter_table('core_reading_exception', schema=None) as batch_op:
        batch_op.drop_index('ix_core_reading_exception_status_read_at')
        batch_op.drop_index(batch_op.f('ix_core_reading_exception_account_id'))
        batch_op.drop_constraint(batch_op.f('ck_core_reading_exception_resolution'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_core_reading_exception_kind'), type_='check')
        for column in ('corrected_m3', 'resolution_note', 'resolution', 'resolved_by', 'resolved_at', 'severity',
                       'kind'):
            batch_op.drop_column(column)
        batch_op.alter_column('volume_m3', existing_type=sa.Numeric(precision=14, scale=3), nullable=False)
