"""core accounts: the household of an account and its large-household uplift approval, with history

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-27 20:00:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('core_account_household',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('residents', sa.Integer(), nullable=False),
    sa.Column('approval_reference', sa.String(length=64), nullable=True),
    sa.Column('approval_valid_from', sa.Date(), nullable=True),
    sa.Column('approval_valid_until', sa.Date(), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_by', sa.String(length=64), nullable=False),
    sa.Column('client_request_id', sa.String(length=64), nullable=False),
    sa.CheckConstraint('residents BETWEEN 1 AND 99', name=op.f('ck_core_account_household_residents')),
    sa.CheckConstraint(
        '(approval_reference IS NULL AND approval_valid_from IS NULL AND approval_valid_until IS NULL) OR '
        '(approval_reference IS NOT NULL AND approval_valid_from IS NOT NULL AND '
        '(approval_valid_until IS NULL OR approval_valid_until > approval_valid_from))',
        name=op.f('ck_core_account_household_approval')),
    sa.ForeignKeyConstraint(['account_id'], ['core_account.id'],
                            name=op.f('fk_core_account_household_account_id_core_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_account_household'))
    )
    with op.batch_alter_table('core_account_household', schema=None) as batch_op:
        batch_op.create_index('ix_core_account_household_account', ['account_id', 'recorded_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('core_account_household', schema=None) as batch_op:
        batch_op.drop_index('ix_core_account_household_account')
    op.drop_table('core_account_household')
