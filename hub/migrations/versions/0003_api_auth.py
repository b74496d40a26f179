"""api auth: API users, hashed bearer tokens, write audit

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 14:40:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('core_api_audit',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('role', sa.String(length=32), nullable=True),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('path', sa.String(length=500), nullable=False),
    sa.Column('resource', sa.String(length=32), nullable=False),
    sa.Column('resource_id', sa.String(length=64), nullable=True),
    sa.Column('remote', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('detail', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_core_api_audit'))
    )
    with op.batch_alter_table('core_api_audit', schema=None) as batch_op:
        batch_op.create_index('ix_core_api_audit_at', ['at'], unique=False)
        batch_op.create_index('ix_core_api_audit_user', ['user_id', 'seq'], unique=False)

    op.create_table('core_api_user',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('password_salt', sa.String(length=64), nullable=False),
    sa.Column('password_hash', sa.String(length=128), nullable=False),
    sa.Column('disabled', sa.Boolean(), nullable=False),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('first_failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_api_user')),
    sa.UniqueConstraint('username', name=op.f('uq_core_api_user_username'))
    )
    op.create_table('core_api_token',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['core_api_user.id'], name=op.f('fk_core_api_token_user_id_core_api_user')),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_core_api_token'))
    )
    with op.batch_alter_table('core_api_token', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_api_token_user_id'), ['user_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('core_api_token', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_api_token_user_id'))

    op.drop_table('core_api_token')
    op.drop_table('core_api_user')
    with op.batch_alter_table('core_api_audit', schema=None) as batch_op:
        batch_op.drop_index('ix_core_api_audit_user')
        batch_op.drop_index('ix_core_api_audit_at')

    op.drop_table('core_api_audit')
