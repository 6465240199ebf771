"""gradlab: composable gradient transformations, schedules and losses for JAX."""
