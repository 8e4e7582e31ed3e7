"""Gold: business aggregates, recomputed only for the grain values (days, months) that changed."""
