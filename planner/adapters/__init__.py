"""Adapters: the outside world behind one module each.

``libvirt`` is the only module of migplan that imports libvirt; ``catalogs`` reads CPU
catalog files.  (The Nova adapter joins here, the only module that imports openstacksdk.)
"""
