"""Roles: what an identity may do, each role including the ones below it.

- ``viewer``: read pages and APIs (and predict, where prediction routes need a token);
- ``labeler``: also give labels (``POST /feedback``) and answer the review queue;
- ``deployer``: also deploy, roll back, promote, switch, pause, resume, and approve or reject
  pipeline steps;
- ``admin``: also manage tokens, monitors and retention, and deploy a version that fails
  the endpoint's blessing requirement (with a recorded reason).

>>> Role.parse("deployer") >= Role.labeler
True
>>> Role.parse("root")
Traceback (most recent call last):
...
prodml.errors.InvalidInputError: role='root': must be one of viewer, labeler, deployer, admin
"""

from __future__ import annotations

from enum import IntEnum

from prodml.errors import InvalidInputError


class Role(IntEnum):
    """A role; a higher one may do all that a lower one may."""

    viewer = 1
    labeler = 2
    deployer = 3
    admin = 4

    @classmethod
    def parse(cls, value: object) -> "Role":
        if isinstance(value, Role):
            return value
        if isinstance(value, str) and value in cls.__members__:
            return cls[value]
        raise InvalidInputError("role", value, "must be one of " + ", ".join(cls.__members__))

    def __str__(self) -> str:
        return self.name
