"""critic-guard for LangChain ``create_agent`` agents and compiled LangGraph graphs."""
