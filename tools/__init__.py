"""Tools the model may call: registry, allowlists, execution and the audit log."""
