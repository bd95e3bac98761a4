"""`ovphi bench`'s library: latency of model folders x engines over fixed scenarios (run.py), the
scenarios as data (scenarios.py), and the report's Markdown and plot (report.py)."""
from .run import bench
from .scenarios import SCENARIOS, Scenario

__all__ = ["SCENARIOS", "Scenario", "bench"]
