"""Progressive delivery: which arm (champion or challenger) serves an entity, and what the outcomes
say about the arms — sticky canary assignment, the A/B test's significance and sample size, and the
Thompson-sampling bandit's allocation (:mod:`flywheel.rollout.stats`)."""
