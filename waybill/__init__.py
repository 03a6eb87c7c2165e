"""privacy-waybill: privacy-preserving express waybills."""
