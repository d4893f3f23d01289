"""Geometry of the set of rewards consistent with the data: volumes, Chebyshev radii, reward intervals,
and the theory claims of ``proofs/`` certified on given data.

Modules: :mod:`~fairl_opt.geometry.feasible_set` (the sets, one convention), :mod:`~.conic` (the one
conic layer), :mod:`~.exact` (rational checks), :mod:`~.kernels` (Numba samplers), :mod:`~.volume` and
:mod:`~.telescope` (volume estimates), :mod:`~.ambiguity` (reward intervals, the standard-vs-FA summary),
:mod:`~.claims` (``fairl certify``), :mod:`~.cli` (the ``volume`` and ``certify`` commands).
"""

from fairl_opt.geometry.ambiguity import RewardIntervals, geometry_summary, reward_intervals
from fairl_opt.geometry.claims import certify_claims, certify_sets
from fairl_opt.geometry.feasible_set import (
    ChebyshevBall,
    FeasibleSet,
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
    "certify_claims",
    "certify_sets",
    "ChebyshevBall",
    "effective_sample_size",
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
