"""Where the doctor reads a deployment's configuration from.

* ``from_stack``: the CloudFormation stack's outputs (``ApiUrl``, ``AlarmTopicArn``) and the
  environment of each of its Lambda functions, exactly as the functions read it.
* ``from_environment``: the same variable names, from this shell (plus ``API_URL`` and
  ``ALARM_TOPIC_ARN``, which no function reads).

Either way a ``<NAME>_ARN`` variable is read from Secrets Manager or SSM with the functions'
own code (``payments.adapters.secrets``), so a secret the functions cannot read fails here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from payments.adapters.secrets import REFERENCE_SUFFIX, SecretUnavailable, get_secret
from payments.settings import Settings

# Stack outputs the doctor uses, and the variable each one fills.
OUTPUTS = {"ApiUrl": "API_URL", "AlarmTopicArn": "ALARM_TOPIC_ARN"}

ClientFactory = Callable[[str], Any]


@dataclass
class Config:
    """Variables by name, with secrets resolved; ``problems`` names what could not be read."""

    values: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    source: str = "environment"

    def get(self, name: str) -> str | None:
        value = self.values.get(name, "").strip()
        return value or None


def _resolve(raw: Mapping[str, str], source: str) -> Config:
    config = Config(source=source)
    # Only a setting's <NAME>_ARN points at a secret (ALARM_TOPIC_ARN is just an ARN).
    references = {name.upper() + REFERENCE_SUFFIX for name in Settings.model_fields}
    for name, value in raw.items():
        if name not in references:
            config.values.setdefault(name, value)
            continue
        variable = name.removesuffix(REFERENCE_SUFFIX)
        if raw.get(variable, "").strip() or not value.strip():
            continue
        try:
            config.values[variable] = get_secret(value.strip(), variable)
        except SecretUnavailable as exc:
            config.problems.append(exc.message)
    return config


def from_environment(environ: Mapping[str, str]) -> Config:
    return _resolve(dict(environ), "environment")


def from_stack(stack_name: str, client: ClientFactory) -> Config:
    """The configuration of ``stack_name``'s functions, as Lambda holds it."""
    cloudformation = client("cloudformation")
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    raw: dict[str, str] = {}
    for output in stack.get("Outputs") or []:
        if output["OutputKey"] in OUTPUTS:
            raw[OUTPUTS[output["OutputKey"]]] = output["OutputValue"]
    functions = []
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        functions += [
            resource["PhysicalResourceId"]
            for resource in page["StackResourceSummaries"]
            if resource["ResourceType"] == "AWS::Lambda::Function"
        ]
    lambda_client = client("lambda")
    for function in sorted(functions):
        settings = lambda_client.get_function_configuration(FunctionName=function)
        for name, value in (settings.get("Environment") or {}).get("Variables", {}).items():
            raw.setdefault(name, value)
    return _resolve(raw, f"stack {stack_name} ({len(functions)} functions)")
