"""Alembic's environment and revisions (`lexdesk migrate`). A package only so that a plain install
(`pip install .`) carries it; Alembic reads the revisions in versions/ as files."""
