"""``python -m tools.doctor``: check a deployment's configuration against each real service.

Every check talks to the service for real and prints ✓ or ✗ with the fix; the exit status is 1
when any check fails. The configuration is the deployed functions' own (``--stack``: their
environment read from Lambda, secrets read from where it points), or the variables the
functions read, taken from this shell. See docs/deploy.md, "Checking a deployment".
"""
