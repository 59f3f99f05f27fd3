"""The card store: SQLAlchemy 2 models, the repository and unit of work, migrations, `flask store` commands.

Knows no CX.
"""
