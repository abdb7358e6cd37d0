"""Built-in toy tasks small enough for a CPU to show GRPO learning."""
