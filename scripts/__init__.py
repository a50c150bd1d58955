"""Operator scripts: the deployment checks that drive docker compose."""
