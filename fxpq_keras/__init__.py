"""fxpq."""
