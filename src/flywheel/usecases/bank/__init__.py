"""Bank marketing (UCI Bank Marketing, seed 002): term-deposit subscription per phone contact."""
