"""Webhooks: what happened to an account, recorded once and delivered, signed, to its endpoints.

`notifications` records an occurrence (a quota threshold, a key created) once however many
processes notice it, with one delivery per subscribed endpoint; `delivery` sends a delivery,
records each attempt and schedules the next; `destinations` decides where a webhook may go (no
private addresses) and sends one attempt; `signing` is the Standard Webhooks signature;
`endpoints` are the rules customers' endpoints follow; `thresholds` notices quota crossings at
admission in a web process. May use `timo_hub.accounts` and the platform, nothing above.
"""
