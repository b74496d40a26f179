"""core accounts: the final bill of a closed account, and the arrears a new holder carried

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 18:40:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('core_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('final_bill_id', sa.String(length=32), nullable=True))
    with op.batch_alter_table('core_account_holder_history', schema=None) as batch_op:
        batch_op.add_column(sa.Column('arrears_carried', sa.Numeric(precision=14, scale=2), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('core_account_holder_history', schema=None) as batch_op:
        batch_op.drop_column('arrears_carried')
    with op.batch_alter_table('core_account', schema=None) as batch_op:
        batch_op.drop_column('final_bill_id')
