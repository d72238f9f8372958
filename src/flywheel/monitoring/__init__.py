"""Monitoring: reference profiles of training data and drift statistics against them."""
