"""Accounts, plans and API keys: the rules, the key format and the SQL that stores them.

`key_format` (generating, checking and hashing keys), `principal` (who a key belongs to),
`cache` (the per-process principal cache and its Redis invalidation), `store` (every statement
about accounts, plans and keys), `service` (the rules: one transaction each, shared by the API and
the CLI). Imports only the platform and `timo_hub.errors`.
"""
