"""Test-session settings: one thread per pool, a derandomised Hypothesis profile for CI."""

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from hypothesis import HealthCheck, settings  # noqa: E402

from fairl_opt._progress import configure_logging  # noqa: E402

# log lines on stderr as the ``fairl`` command prints them (tests read them through capsys)
configure_logging()

# "ci": fast and reproducible (the default); "thorough": many more cases, for long runs:
#   HYPOTHESIS_PROFILE=thorough pytest tests
settings.register_profile(
    "ci", max_examples=25, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
