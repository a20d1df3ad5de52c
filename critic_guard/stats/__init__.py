"""Statistics for deciding whether a critic's interventions help (DESIGN.md §4). Depends on numpy and scipy only.

Fixed pilot: :func:`analyze` turns :class:`PairedCounts` into a :class:`PilotReport` (Tango score interval for
net, exact and mid-p McNemar, Dirichlet posterior, power, verdict). Continuous monitoring: :class:`MonitorState`
(betting e-processes for harm and benefit, anytime-valid confidence sequence). Physical limit: :class:`OracleSPRT`.
"""

from critic_guard.stats.counts import Estimate, PairedCounts, UndefinedEstimateError
from critic_guard.stats.intervals import Interval, tango_interval, tango_statistic
from critic_guard.stats.mcnemar import McNemarResult, mcnemar
from critic_guard.stats.monitor import MonitorPaths, MonitorState, pair_to_x, run_monitor
from critic_guard.stats.oracle import OracleSimulation, OracleSPRT, oracle_expected_tasks
from critic_guard.stats.posterior import PosteriorSummary, dirichlet_posterior, prob_net_positive
from critic_guard.stats.power import mcnemar_power, mcnemar_sample_size, minimum_detectable_effect
from critic_guard.stats.report import Decision, PilotReport, PowerSummary, analyze, decide

__all__ = [
    "Decision",
    "Estimate",
    "Interval",
    "McNemarResult",
    "MonitorPaths",
    "MonitorState",
    "OracleSPRT",
    "OracleSimulation",
    "PairedCounts",
    "PilotReport",
    "PosteriorSummary",
    "PowerSummary",
    "UndefinedEstimateError",
    "analyze",
    "decide",
    "dirichlet_posterior",
    "mcnemar",
    "mcnemar_power",
    "mcnemar_sample_size",
    "minimum_detectable_effect",
    "oracle_expected_tasks",
    "pair_to_x",
    "prob_net_positive",
    "run_monitor",
    "tango_interval",
    "tango_statistic",
]
