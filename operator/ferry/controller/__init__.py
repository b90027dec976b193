"""The kopf operator: thin handlers that observe, call the pure logic, and act."""
