"""core readings: the flow (correlation id) each reading came in, so the bill it closes joins that flow

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 16:35:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('core_reading', schema=None) as batch_op:
        batch_op.add_column(sa.Column('correlation_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('core_reading', schema=None) as batch_op:
        batch_op.drop_column('correlation_id')
