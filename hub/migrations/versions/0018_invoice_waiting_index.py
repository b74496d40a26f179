"""core: a partial index on the invoice requests the tax system has not answered

The ops panel counts them and finds the oldest at every refresh; without it, that read scanned every
invoice ever issued.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-28 01:30:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_core_invoice_waiting', 'core_invoice', ['requested_at'], unique=False,
                    postgresql_where=sa.text("status = 'requested'"), sqlite_where=sa.text("status = 'requested'"))


def downgrade() -> None:
    op.drop_index('ix_core_invoice_waiting', table_name='core_invoice')
