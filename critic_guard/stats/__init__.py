"""Statistics for deciding whether a critic's interventions help (docs/statistics.md). Depends on numpy and scipy only.

Fixed pilot: :func:`analyze` turns :class:`PairedCounts` into a :class:`PilotReport` (Tango score interval for
net, exact and mid-p McNemar, Dirichlet posterior, the verdict's exact power, verdict). Continuous monitoring:
:class:`MonitorState` (betting e-processes for harm and benefit, the confidence sequence they invert to).
Physical limit: :class:`OracleSPRT`.

Every name is loaded on first use (module ``__getattr__``): scipy alone takes longer to import than LangChain's
agents, and a guarded agent needs the statistics only when it decides (pilot report, monitor), so importing
``critic_guard.stats.counts`` (or ``critic_guard``) never loads scipy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from critic_guard._lazy import lazy_getattr

if TYPE_CHECKING:
    from critic_guard.stats.counts import Estimate, PairedCounts, UndefinedEstimateError
    from critic_guard.stats.intervals import Interval, tango_interval, tango_statistic
    from critic_guard.stats.mcnemar_exact import McNemarResult, mcnemar
    from critic_guard.stats.monitor import MonitorPaths, MonitorState, pair_to_x, run_monitor, side_alpha
    from critic_guard.stats.oracle import OracleSimulation, OracleSPRT, oracle_expected_tasks
    from critic_guard.stats.posterior import PosteriorSummary, dirichlet_posterior, prob_net_positive
    from critic_guard.stats.power import (
        CONNOR_METHOD,
        EXACT_METHOD,
        mcnemar_power,
        mcnemar_sample_size,
        minimum_detectable_effect,
        verdict_detectable_effect,
        verdict_power,
        verdict_sample_size,
    )
    from critic_guard.stats.report import PilotConclusion, PilotReport, PowerSummary, analyze, decide, verdict_of

_LAZY = {
    "Estimate": "critic_guard.stats.counts",
    "PairedCounts": "critic_guard.stats.counts",
    "UndefinedEstimateError": "critic_guard.stats.counts",
    "Interval": "critic_guard.stats.intervals",
    "tango_interval": "critic_guard.stats.intervals",
    "tango_statistic": "critic_guard.stats.intervals",
    "McNemarResult": "critic_guard.stats.mcnemar_exact",
    "mcnemar": "critic_guard.stats.mcnemar_exact",
    "MonitorPaths": "critic_guard.stats.monitor",
    "MonitorState": "critic_guard.stats.monitor",
    "pair_to_x": "critic_guard.stats.monitor",
    "run_monitor": "critic_guard.stats.monitor",
    "side_alpha": "critic_guard.stats.monitor",
    "OracleSimulation": "critic_guard.stats.oracle",
    "OracleSPRT": "critic_guard.stats.oracle",
    "oracle_expected_tasks": "critic_guard.stats.oracle",
    "PosteriorSummary": "critic_guard.stats.posterior",
    "dirichlet_posterior": "critic_guard.stats.posterior",
    "prob_net_positive": "critic_guard.stats.posterior",
    "mcnemar_power": "critic_guard.stats.power",
    "mcnemar_sample_size": "critic_guard.stats.power",
    "minimum_detectable_effect": "critic_guard.stats.power",
    "CONNOR_METHOD": "critic_guard.stats.power",
    "EXACT_METHOD": "critic_guard.stats.power",
    "verdict_detectable_effect": "critic_guard.stats.power",
    "verdict_power": "critic_guard.stats.power",
    "verdict_sample_size": "critic_guard.stats.power",
    "PilotConclusion": "critic_guard.stats.report",
    "PilotReport": "critic_guard.stats.report",
    "PowerSummary": "critic_guard.stats.report",
    "analyze": "critic_guard.stats.report",
    "decide": "critic_guard.stats.report",
    "verdict_of": "critic_guard.stats.report",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "CONNOR_METHOD",
    "EXACT_METHOD",
    "Estimate",
    "Interval",
    "McNemarResult",
    "MonitorPaths",
    "MonitorState",
    "OracleSPRT",
    "OracleSimulation",
    "PairedCounts",
    "PilotConclusion",
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
    "side_alpha",
    "tango_interval",
    "tango_statistic",
    "verdict_detectable_effect",
    "verdict_of",
    "verdict_power",
    "verdict_sample_size",
]
