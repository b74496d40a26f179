"""core: each meter's registers on the bill of an account with several meters

Such an account is billed once per period on its meters' volumes summed (the tiers are per
household); ``core_bill_meter`` keeps what each meter contributed.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-28 16:00:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'core_bill_meter',
        sa.Column('bill_id', sa.String(length=32), nullable=False),
        sa.Column('meter_id', sa.String(length=32), nullable=False),
        sa.Column('reading_start_m3', sa.Numeric(precision=14, scale=3), nullable=False),
        sa.Column('reading_end_m3', sa.Numeric(precision=14, scale=3), nullable=False),
        sa.Column('volume_m3', sa.Numeric(precision=14, scale=3), nullable=False),
        sa.Column('estimated', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['bill_id'], ['core_bill.id'], name=op.f('fk_core_bill_meter_bill_id_core_bill')),
        sa.PrimaryKeyConstraint('bill_id', 'meter_id', name='pk_core_bill_meter'),
    )


def downgrade() -> None:
    op.drop_table('core_bill_meter')
