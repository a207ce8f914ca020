"""Tenants, memberships, API keys, and the one place where tenant scoping is enforced."""
