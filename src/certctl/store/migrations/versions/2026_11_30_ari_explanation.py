"""An issuer's renew-by deadline may carry the page ACME clients are pointed to (RFC 9773
``explanationURL``).

Revision ID: 2026_11_30_ari_explanation
Revises: 2026_11_30_acme_address_domain
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "2026_11_30_ari_explanation"
down_revision = "2026_11_30_acme_address_domain"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issuer_renewal_deadlines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("explanation_url", sa.String(length=2000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issuer_renewal_deadlines", schema=None) as batch_op:
        batch_op.drop_column("explanation_url")
