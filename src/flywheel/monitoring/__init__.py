"""Monitoring: reference profiles, drift statistics and reports, delayed-label performance, the
traffic simulator, and alerts."""
