"""The installed package: layout, and what the build recorded."""

import importlib.metadata
import importlib.util
import json
from importlib import resources
from pathlib import Path

import trm_fast


def test_tests_run_against_the_installed_package():
    repo = Path(__file__).resolve().parents[1]
    assert not Path(trm_fast.__file__).resolve().is_relative_to(repo / "trm_fast") or \
        importlib.util.find_spec("trm_fast.kernels") is not None


def test_kernels_install_inside_the_package():
    import trm_fast.kernels

    assert Path(trm_fast.kernels.__file__).parent.parent == Path(trm_fast.__file__).parent
    # nothing named `kernels` at the top of site-packages
    assert not [f for f in importlib.metadata.files("trm_fast") if f.parts[0] == "kernels"]


def test_build_info_says_whether_the_extension_was_built():
    info = json.loads(resources.files("trm_fast").joinpath("_build_info.json").read_text())
    assert set(info) >= {"cuda_extension", "reason"}
    assert info["cuda_extension"] or info["reason"]
