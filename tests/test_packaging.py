"""The installed package: layout, and what the build recorded."""

import importlib.metadata
import importlib.util
import json
from importlib import resources
from pathlib import Path

import trm_fast

REPO = Path(__file__).resolve().parents[1]


def test_tests_run_against_the_installed_package():
    assert not Path(trm_fast.__file__).resolve().is_relative_to(REPO / "trm_fast") or \
        importlib.util.find_spec("trm_fast.kernels") is not None


def _editable() -> bool:
    """Installed with `pip install -e`: the package is imported from the source tree."""
    direct_url = importlib.metadata.distribution("trm_fast").read_text("direct_url.json")
    return bool(direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"))


def test_kernels_install_inside_the_package():
    import trm_fast.kernels

    if _editable():  # mapped from the top-level kernels/ of the source tree
        assert Path(trm_fast.kernels.__file__).parent == REPO / "kernels"
    else:
        assert Path(trm_fast.kernels.__file__).parent.parent == Path(trm_fast.__file__).parent
    # nothing named `kernels` at the top of site-packages
    assert not [f for f in importlib.metadata.files("trm_fast") if f.parts[0] == "kernels"]


def test_build_info_says_whether_the_extension_was_built():
    info = json.loads(resources.files("trm_fast").joinpath("_build_info.json").read_text())
    assert set(info) >= {"cuda_extension", "reason"}
    assert info["cuda_extension"] or info["reason"]
