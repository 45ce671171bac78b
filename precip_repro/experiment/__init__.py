"""The experiment: the precip API (``api``) above small parts, each in the file named for it.

- ``recording``: how calls are recorded — recorded, unrecorded or played back, chosen once;
- ``fleet``: the instances — launched by slot, chosen by tags, terminated;
- ``instance``: one instance and how far it can be reached (one state, with its reason);
- ``reach``: ssh endpoints and connections, and asking the cloud about an instance lost;
- ``boot``: ``wait()`` — boot supervision, replacement, login and sudo probes, facts;
- ``commands`` and ``transfers``: what runs on instances and what moves to and from them;
- ``fanout``: one thing for each instance, in turn or on threads;
- ``lifetime``: how an experiment ends;
- ``kinds``: the classes users construct, one per kind of cloud.

docs/architecture.md draws the arrows allowed between them.
"""

from __future__ import annotations

from precip_repro.experiment.api import Experiment
from precip_repro.experiment.fanout import MAX_WORKERS, fan_out
from precip_repro.experiment.instance import Instance

__all__ = ["MAX_WORKERS", "Experiment", "Instance", "fan_out"]
