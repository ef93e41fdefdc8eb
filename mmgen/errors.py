"""Error types raised by the mmgen library; only the CLI turns them into output."""


class MmgenError(Exception):
    """Base class: a problem the user can fix, reported as one line without a traceback."""

    hint: str = ""
    exit_code: int = 1  # what the command line exits with
    quiet: bool = False  # True: the command line exits without printing (another process already did)
    every_rank: bool = False  # True: under torchrun every rank prints it (no rank is sure to be there to say it)

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint or self.hint


class RecipeError(MmgenError):
    """The recipe (file or overrides) is invalid; the message lists every problem with its dotted key."""

    hint = "fix the recipe; `mmgen train --help` shows the override syntax"


class PluginError(MmgenError):
    """A plugin is missing, failed to load, or registered a name twice."""

    hint = "`mmgen plugins` lists what is installed"


class DataError(MmgenError):
    """A data set could not be found, downloaded or read."""

    hint = "set data.root in the recipe or MMGEN_DATA_ROOT to a folder in torchvision's layout"


class GivenError(MmgenError):
    """A `--given MOD=VALUE` value is malformed, names no modality, or is out of range."""


class CheckpointError(MmgenError):
    """A run directory or checkpoint is missing, incomplete or corrupt."""


class TrainingDiverged(MmgenError):
    """A loss became NaN, Inf, or blew up past the divergence rule; the last good checkpoint was kept."""


class TrainingInterrupted(MmgenError):
    """SIGINT or SIGTERM stopped training after a step; a checkpoint to resume from was written."""

    def __init__(self, message: str, signal_number: int, hint: str = ""):
        super().__init__(message, hint)
        self.exit_code = 128 + signal_number  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class PeerFailed(MmgenError):
    """Under torchrun, another rank failed and this one lost its connection: that rank says why."""

    quiet = True  # the command line prints nothing for it
