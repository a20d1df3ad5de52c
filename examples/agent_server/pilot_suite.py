"""A pilot suite for the example agent: the same tasks run in process or on the deployed agent.

    critic-guard pilot pilot_suite:suite --store sqlite:///pilot.db                 # in process
    critic-guard pilot pilot_suite:suite --server http://127.0.0.1:2024 --assistant agent \\
        --store sqlite:///pilot.db                                                  # on the Agent Server

With ``--server`` every task is a run on the server (its queue and workers carry the load) and the pilot reads the
pairs from the store the deployment writes to: start the server with ``CRITIC_GUARD_MODE=pilot`` and
``CRITIC_GUARD_STORE`` naming the same store (PostgreSQL when they run on different machines; docs/pilot.md).
"""

from __future__ import annotations

from adder import AGENT_NAME, POLICY, SHADOW_TOOLS, add, critic, judge, llm
from langchain.agents import create_agent

from critic_guard.pilot import PilotSuite
from critic_guard_langgraph.pilot import LangGraphPilot
from critic_guard_langgraph.testing import ScriptedChatModel


def agent(middleware, checkpointer):  # in process: the deployed graph's agent, with the pilot's middleware
    return create_agent(ScriptedChatModel(policy=llm), [add], middleware=list(middleware), checkpointer=checkpointer)


def suite(tasks: int = 12):
    data = [{"task_id": f"sum-{i}", "input": f"Add 1, 2, 3 and 4: request {i}"} for i in range(tasks)]
    adapter = LangGraphPilot(agent=agent, judge=judge, shadow_tools=SHADOW_TOOLS)
    return PilotSuite(AGENT_NAME, data, critic, adapter, policy=POLICY)
