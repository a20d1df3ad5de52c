"""The pilot report and the guard status (``critic-guard report|status|enable|disable``), one job per module.

- :mod:`.data`: gather from a store (one guard key) or a pairs file into a frozen ``ReportData``;
- :mod:`.numbers`: every number, from ``critic_guard.stats.analyze`` and the monitor (never recomputed otherwise);
- :mod:`.figures`: the PNG figures (matplotlib, the ``plot`` extra);
- :mod:`.page`: what both pages share (skeleton and style, escaping, tagged numbers, tables);
- :mod:`.html`: the pilot page and its first screen, :mod:`.pilot_sections`: its evidence sections;
- :mod:`.build`: numbers, figures and page together, written to disk;
- :mod:`.observed` and :mod:`.observed_page`: the observe report, for a guard key with runs but no completed pairs;
- :mod:`.status` and :mod:`.override`: the status table and a human override of the lifecycle state.

Nothing is imported here, so ``critic-guard status`` never loads matplotlib.
"""
