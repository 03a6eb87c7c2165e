"""Oversight: alert rules (:mod:`.rules`), their thresholds (:mod:`.settings`), the deduplicating alert store and
the automatic suspension (:mod:`.store`), over the tables of :mod:`.models`; the periodic sweep of the rules that
need history (:mod:`.sweep`, tables in :mod:`.sweep_models`)."""
