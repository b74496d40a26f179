"""core meters: how a meter is reached (CJ/T 188 address, NB-IoT IMEI) and when it was last verified

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27 17:12:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('core_meter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('protocol_address', sa.String(length=14), nullable=True))
        batch_op.add_column(sa.Column('imei', sa.String(length=15), nullable=True))
        batch_op.add_column(sa.Column('verified_on', sa.Date(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_core_meter_imei'), ['imei'])


def downgrade() -> None:
    with op.batch_alter_table('core_meter', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_core_meter_imei'), type_='unique')
        batch_op.drop_column('verified_on')
        batch_op.drop_column('imei')
        batch_op.drop_column('protocol_address')
