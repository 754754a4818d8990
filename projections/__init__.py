"""Read models built from the event log: feed, lineage, consent registry, audit trail, takedowns.

`store` lists the projections and opens their store (written through SQLAlchemy); `queries` reads them
through `database`, on the DB-API drivers alone, so a process that only reads never imports SQLAlchemy.
"""
