"""The parts of one running emulator, handed to each group of routes."""

from __future__ import annotations

from dataclasses import dataclass

from .agent import Agent
from .config import EmulatorConfig
from .faults import FaultInjector
from .state import Store


@dataclass
class Emulator:
    config: EmulatorConfig
    store: Store
    faults: FaultInjector
    agent: Agent
