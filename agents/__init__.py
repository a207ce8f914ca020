"""Voice agents: what a tenant configures and what the Live session is opened with."""
