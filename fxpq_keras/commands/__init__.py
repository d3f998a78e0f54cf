"""Subcommands of the fxpq CLI (see fxpq_keras/cli.py)."""
