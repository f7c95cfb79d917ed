"""The published contract: every `/api/v1` operation, described once and served as OpenAPI 3.1.

`registry.operation()` registers a view on the blueprint *and* records what it accepts and answers
(the same pydantic models that parse its query and body and shape its responses); `document`
turns the records into the OpenAPI document at `/api/v1/openapi.json`. A route cannot exist
without its description, and the description cannot name a model the code does not use.
"""
