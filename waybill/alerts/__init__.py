"""Oversight: alert rules (:mod:`.rules`), their thresholds (:mod:`.settings`), the deduplicating alert store and
the automatic suspension (:mod:`.store`), over the tables of :mod:`.models`."""
