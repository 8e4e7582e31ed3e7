"""Silver: typed, conformed, deduplicated by key with MERGE; bad rows go to quarantine.

Every silver table drops rows bronze could not parse (`PARSED`), so the rule lives here once.
"""

PARSED = {"unparseable values (see _rescued_data)": "_rescued_data IS NULL"}

# The ingestion-time column every silver table keeps, described once.
INGESTED_AT = {"_ingested_at": "When the row's source record was ingested into bronze (UTC); the latest wins a key collision"}
