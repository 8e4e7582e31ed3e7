"""Silver: typed, conformed, deduplicated by key with MERGE; bad rows go to quarantine.

Every silver table drops rows bronze could not parse (`PARSED`), so the rule lives here once.
"""

PARSED = {"unparseable values (see _rescued_data)": "_rescued_data IS NULL"}
