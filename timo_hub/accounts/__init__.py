"""Accounts, plans and API keys: the key format and the SQL that stores them."""
