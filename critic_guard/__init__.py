"""critic-guard: decide with honest statistics whether a critic's interventions help an agent.

The core package is framework-neutral (numpy, scipy, pydantic, the OpenTelemetry API; the SDK comes with the
``otlp`` extra); integrations such as ``critic_guard_langgraph`` depend on it, never the reverse. Importing it loads
neither scipy (the statistics load on first use), matplotlib nor the OpenTelemetry SDK.
"""

from critic_guard._version import __version__
from critic_guard.config import GuardConfig
from critic_guard.critics import ConstantCritic, Critic, FunctionCritic, RuleCritic, as_critic
from critic_guard.guard import CriticGuard, StepReview
from critic_guard.policy import Decision, Policy
from critic_guard.types import Action, Arm, Message, Mode, StepContext, Verdict

__all__ = [
    "Action",
    "Arm",
    "ConstantCritic",
    "Critic",
    "CriticGuard",
    "Decision",
    "FunctionCritic",
    "GuardConfig",
    "Message",
    "Mode",
    "Policy",
    "RuleCritic",
    "StepContext",
    "StepReview",
    "Verdict",
    "__version__",
    "as_critic",
]
