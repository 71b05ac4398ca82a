"""The `iotdr` command: testbed, demo and tools."""
