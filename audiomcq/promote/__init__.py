"""Promotion of an evaluated checkpoint to KServe: decision, rendering, the canary gate and lineage.

``audiomcq promote`` (``audiomcq.cli.promote``) runs ``gate.run_gate``; the modules are usable on their own:
``decision.decide`` on metrics files, ``render.render``/``render.validate`` for the InferenceService,
``lineage.build`` for the chain data -> recipe -> run -> checkpoint -> evaluation -> revision.
"""
