"""iotdr failover agent: pure decision core, adapters, daemon."""
