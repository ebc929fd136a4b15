"""Adapters: the outside world behind one module each.

``libvirt`` is the only module of migplan that imports libvirt; ``nova`` the only one that
imports openstacksdk; ``nova_migrate`` is Nova's migration driver (on ``nova.NovaMover``);
``catalogs`` reads CPU catalog files; ``files`` reads the files a user names (bounded in
size and time); ``outdir`` writes output files whole and output directories without mixing
runs.
"""
