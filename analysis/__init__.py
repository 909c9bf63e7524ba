"""seedwise.analysis: do ablation arms really differ over seeds? (pure statistics)"""

from ._checks import DegenerateDataWarning
from .comparison import Comparison, Equivalence, compare, min_attainable_p, primary_test
from .describe import ArmSummary, describe
from .failures import outcome_table
from .family import Family, compare_family, omnibus
from .load import StudyData, arm_frame, compare_arms, family_frame, load_runs, load_study
from .plan import MetricPlan, resolve_plan
from .power import detectable_difference, seeds_needed
from .results import Interval, TestResult
from .testset import (
    McNemarResult,
    SeedPlan,
    SingleRunGap,
    binomial_ci,
    mcnemar_exact,
    single_run_gap,
    two_level_bootstrap,
)
from .verdicts import Verdict, VerdictLabel

__all__ = [
    "ArmSummary", "Comparison", "StudyData", "arm_frame", "compare_arms", "family_frame", "load_runs", "load_study", "DegenerateDataWarning", "Equivalence", "Family", "Interval",
    "McNemarResult", "MetricPlan", "SeedPlan", "SingleRunGap", "TestResult", "Verdict", "VerdictLabel",
    "binomial_ci", "compare", "compare_family", "describe", "detectable_difference",
    "mcnemar_exact", "min_attainable_p", "omnibus", "outcome_table", "primary_test",
    "resolve_plan", "seeds_needed",
    "single_run_gap", "two_level_bootstrap",
]
