from planner.adapters.catalogs import default_catalog


def test_catalog_is_stamped_with_the_libvirt_version_it_came_from():
    cat = default_catalog()
    assert cat.libvirt_version == "9.0.0"
    assert "Skylake-Server" in cat.model_by_name
    assert all(f.mask for f in cat.features)
