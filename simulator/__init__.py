"""iotdr fleet simulator: many devices, each running the agent's decision core,
through a scenario of region faults, with a report of how the fleet recovered.

Layers: `scenario` (the YAML file, validated), `device` (one simulated
device around `iotdr.agent.core.Machine`), transports and runners (real
brokers, virtual time), `report` (JSON, CSV, plots, HTML). Only
`iotdr.agent.core` is imported from the agent.
"""
