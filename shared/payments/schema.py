"""The base of the service's pydantic models."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A pydantic model whose validator and serializer are built the first time it is used,
    not when its module is imported: a function's cold start pays only for the models its
    route uses (each one built at import cost about a millisecond, most of them never used by
    any one request). A subclass's own ``model_config`` is merged with this one."""

    model_config = ConfigDict(defer_build=True)
