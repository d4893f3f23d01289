"""The failure-aware (FA) loop: solve → find failures → tighten / re-weight → re-solve warm.

Max-margin programs tighten the margin of each NEW failure, ``m_j ← m_j + δ`` (j in the failure set
only: raising every margin by the same amount only rescales θ, so a round that would cover every
pair stops instead). With a soft margin, a failure whose slack is already positive sits at its dual
bound α_j = C and tightening its margin leaves θ unchanged (proofs/T10); ``slack_upweight > 1``
therefore also raises the slack price of each new failure, ``C_j ← C_j·slack_upweight`` (the
soft-margin analogue of MaxEnt's up-weighting), which moves θ. MaxEnt up-weights
(``w_j ← w_j·upweight``) and/or sharpens (``T_j ← T_j·sharpen``, sharpen < 1) its failures. Each pair is edited at most once, so the loop ends
after at most n rounds (and at ``max_rounds``).

**Failure rule** (``failure_rule``, :mod:`fairl_opt.fa.rules`): between detection and edit a rule
keeps some failures — ``"all"`` (default), ``"band"``, ``"agree"`` or ``"posterior"`` (the coin-flip
posterior of :mod:`fairl_opt.fa.noise`); only kept failures are edited, and each round records how
many of the detected failures it kept.

Every round is recorded: the failures found on its θ, the pairs changed to get it, its objective
and certificate, and for margin programs a **witness** — the previous θ violates a new constraint,
so the feasible set strictly shrank.

If tightening makes a hard-margin program infeasible, the loop solves the LP
``max t s.t. Δθ ≥ m + t·1_S`` for the largest admissible step, backs off to ``backoff·t*`` and says
so in the round's note; it never returns an uncertified θ.

**Dual path** (``dual_path=True``): the reward is ``θ = θ_b + θ_c`` with θ_b the standard solution
(fixed) and the correction θ_c fitted on the failure pairs only, under its own penalty:
``min ½‖θ_c‖² (+ C_c Σξ) s.t. Δ_j(θ_b + θ_c) ≥ m_j + δ (− ξ_j), j ∈ S`` (or the MaxEnt analogue with
offsets Δ_jθ_b and reg λ_c). This is one convex program in θ: min ½‖θ − θ_b‖² over the tightened
failure constraints. With ``slack_upweight`` the correction's slack prices carry the same factors,
C_c·slack_upweight on each of its pairs.
"""

from fairl_opt.fa.loop import run_fa
from fairl_opt.fa.result import FAResult, FARound
from fairl_opt.fa.settings import FASettings

__all__ = ["FASettings", "FARound", "FAResult", "run_fa"]
