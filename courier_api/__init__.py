"""Courier side: staff authentication, dispatch, scan, virtual-number calls, delivery, audit access.

It reaches the service as an extension (:mod:`courier_api.extension`, entry point group
``waybill.extensions``); ``waybill`` never imports it.
"""
