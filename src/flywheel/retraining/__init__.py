"""Retraining: trigger evaluation and recorded decisions (``retrain``), and the continuous-training
loop that ingests, rebuilds, monitors, retrains and promotes (``loop``)."""
