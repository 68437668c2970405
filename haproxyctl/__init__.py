"""haproxyctl: typed client and CLI for the HAProxy runtime API."""
