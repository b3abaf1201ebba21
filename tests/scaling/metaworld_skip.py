"""Skip a Meta-World test, with the reason, where MuJoCo or Meta-World cannot be imported."""

from __future__ import annotations

import pytest


def skip_without_metaworld(module_level: bool = False) -> None:
    """Import MuJoCo and Meta-World, or skip: the extra is missing, or the GL library MuJoCo loads at
    import is (PyOpenGL without OSMesa fails with "'NoneType' object has no attribute 'glGetError'")."""
    from scaling.data import metaworld_source  # noqa: F401 - picks the GL backend before mujoco loads

    try:
        import metaworld  # noqa: F401
        import mujoco  # noqa: F401
    except ImportError:
        pytest.skip("Meta-World is not installed (the [metaworld] extra)", allow_module_level=module_level)
    except (AttributeError, OSError) as exc:
        pytest.skip(f"MuJoCo's GL backend cannot load ({exc}); install libosmesa6 as .ci/run does",
                    allow_module_level=module_level)
