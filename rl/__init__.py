

import os
import warnings
from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import SpecifierSet
from packaging.version import Version

# The TRL releases rl/ is tested with (pyproject.toml pins the same range). rl/ overrides private
# methods of GRPOTrainer, which TRL may rename or change between minor releases without notice.
TESTED_TRL = SpecifierSet(">=1.16,<1.17")
PRIVATE_TRL_METHODS = ("_generate_and_score_completions", "_calculate_rewards", "_get_per_token_logps_and_entropies")
ALLOW_UNTESTED_TRL = "GR2_ALLOW_UNTESTED_TRL"


def check_trl_version(installed: str | None = None) -> None:
    """Refuse a TRL outside ``TESTED_TRL`` with a message that says why and what to do; with
    ``GR2_ALLOW_UNTESTED_TRL=1`` only warn (for trying a new release)."""
    if installed is None:
        try:
            installed = version("trl")
        except PackageNotFoundError:
            raise ImportError(f"rl/ needs TRL: pip install 'trl{TESTED_TRL}'") from None
    if Version(installed) in TESTED_TRL:
        return
    message = (f"rl/ is tested with trl{TESTED_TRL}, but trl {installed} is installed. It overrides TRL's private "
               f"GRPOTrainer methods ({', '.join(PRIVATE_TRL_METHODS)}), which change between releases, so "
               f"another version may train silently wrong. Install a tested one: pip install 'trl{TESTED_TRL}' "
               f"(or set {ALLOW_UNTESTED_TRL}=1 to try this one anyway).")
    if os.environ.get(ALLOW_UNTESTED_TRL, "") not in ("", "0"):
        warnings.warn(message, stacklevel=2)
        return
    raise ImportError(message)


check_trl_version()
