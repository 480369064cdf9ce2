"""What an operator sees: metrics and structured logs."""
