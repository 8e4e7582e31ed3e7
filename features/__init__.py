"""The Feast feature repo: entities, sources, views and services, split by kind.

Definitions are built from the feature-table declarations in `ray_jobs.features`, with their
paths from settings (`store.feature_store(settings)` builds the store in code; nothing here
hard-codes a path).
"""
