"""Adapters: the outside world behind one module each.

``libvirt`` is the only module of migplan that imports libvirt; ``catalogs`` reads CPU
catalog files; ``files`` reads the files a user names (bounded in size and time);
``outdir`` writes output files whole and output directories without mixing runs.  (The Nova adapter joins here, the only module that imports openstacksdk.)
"""
