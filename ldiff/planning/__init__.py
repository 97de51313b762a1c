"""Dataset fingerprint and the planner that turns it into plans.json."""
