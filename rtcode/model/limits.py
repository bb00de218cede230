"""Resource limits from the policy's [limits] section, as one frozen value.

A damaged or hostile file must not make rtcode allocate unbounded memory or run
unbounded time. The reader checks the file size before reading; the extractor
checks counts (beams, control points, leaf pairs) before it allocates arrays and
rejects meterset values no machine delivers. An exceeded limit is an error for
that file only, naming the element, the value, the limit and the policy setting.

The defaults are the shipped default policy's (a test holds them to it), so the
reading step has limits without loading a policy: the model imports nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The policy's ``[limits]`` section; the defaults are the shipped policy's."""

    max_file_size_mb: float = 512
    max_beams: int = 500
    max_control_points_per_beam: int = 100_000
    max_leaf_pairs: int = 200
    max_meterset_mu: float = 10_000_000.0
    max_control_points_per_plan: int = 1_000_000
    max_data_elements: int = 2_000_000

    @classmethod
    def from_policy(cls, policy: Any) -> Limits:
        """The limits of a ``rtcode.coding.policy.Policy`` (its ``limits.*`` settings)."""
        return cls(**{f.name: policy[f"limits.{f.name}"] for f in fields(cls)})

    @property
    def max_file_size_bytes(self) -> int:
        return int(self.max_file_size_mb * MB)


DEFAULT_LIMITS = Limits()


def default_limits() -> Limits:
    """The shipped default policy's limits, for callers that give none."""
    return DEFAULT_LIMITS
