"""People who sign in to the dashboard: users, their passwords, invitations and sign-in throttling.

`passwords` (the policy and argon2id hashing), `store` (every statement about users and
invitations), `sign_in_throttle` (failed sign-ins counted per email and per address in Redis),
`service` (the rules: sign up, sign in, change a password, invite an owner). A user belongs to one
account; opening one opens the other. Imports `timo_hub.accounts`, the platform and
`timo_hub.errors`; never the quota or usage packages, and nothing of HTTP.
"""
