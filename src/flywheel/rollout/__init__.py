"""Progressive delivery of a challenger beside the champion: the rollout in the registry and its
decisions (:mod:`flywheel.rollout.state`), which arm serves an entity and what outcomes say about the
arms (:mod:`flywheel.rollout.stats`: sticky canary slices, the A/B test's significance and sample
size, Thompson sampling), each arm's predictions and outcomes from the prediction logs
(:mod:`flywheel.rollout.arms`), and the automatic guards (:mod:`flywheel.rollout.guards`)."""
