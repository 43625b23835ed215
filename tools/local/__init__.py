"""Local stand-ins for the third-party services the payment service talks to.

Used by ``make dev`` and the tests: a Memberstack Admin API stand-in, a Make.com webhook
receiver and a local SQS queue with a poller that behaves like Lambda's event source mapping.
Every server binds to 127.0.0.1 only.
"""
