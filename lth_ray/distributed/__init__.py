"""Everything that knows Ray: the sweep, the placement planner, the trainable, the cluster."""
