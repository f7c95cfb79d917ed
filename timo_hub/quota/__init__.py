"""Monthly quota: the billing period, atomic admission in Redis, the durable ledger, headers."""
