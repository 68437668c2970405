"""End-to-end rollouts: a real HAProxy, real app processes and simulated users under load."""
