"""Geometry of the set of rewards consistent with the data: volumes, Chebyshev radii, reward intervals."""

from fairl_opt.geometry.ambiguity import RewardIntervals, geometry_summary, reward_intervals
from fairl_opt.geometry.feasible_set import (
    ChebyshevBall,
    EmptySetError,
    FeasibleSet,
    fa_round_margins,
    margin_scale,
    smallest_norm,
)
from fairl_opt.geometry.volume import (
    PhaseEstimate,
    VolumeEstimate,
    effective_sample_size,
    nested_volume_ratio,
    sample_points,
    volume_fraction,
    volume_ratio,
)

__all__ = [
    "ChebyshevBall",
    "effective_sample_size",
    "EmptySetError",
    "fa_round_margins",
    "FeasibleSet",
    "geometry_summary",
    "margin_scale",
    "nested_volume_ratio",
    "PhaseEstimate",
    "reward_intervals",
    "RewardIntervals",
    "sample_points",
    "smallest_norm",
    "volume_fraction",
    "volume_ratio",
    "VolumeEstimate",
]
